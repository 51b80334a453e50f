"""What only the token-classification task does: word-to-sub-token labels, per-word scoring,
entity-level metrics, CoNLL files and tag names."""

import json

import pytest
import torch
from conftest import PROJECT, TINY, arguments, final_weights, run_train

import task


def test_bundled_metric_scores_entities_not_tags():
    import evaluate

    metric = evaluate.load(str(PROJECT / "metrics" / "seqeval"))
    references = [["B-PER", "I-PER", "O", "B-LOC"], ["S-ORG", "O", "B-LOC", "E-LOC"]]
    # Sentence 1: the person right, the location taken for an organisation. Sentence 2 (IOBES):
    # the organisation right, the location cut short (one entity of two words, not one word).
    predictions = [["B-PER", "I-PER", "O", "B-ORG"], ["S-ORG", "O", "S-LOC", "O"]]
    scores = metric.compute(predictions=predictions, references=references)
    # 2 of 4 predicted entities are true, 2 of 4 true entities found; 5 of 8 words right.
    assert scores == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "accuracy": 5 / 8}


def test_a_stray_inside_tag_starts_an_entity_as_in_conlleval():
    from metrics.seqeval.seqeval import entities

    assert entities(["I-PER", "I-PER", "O", "I-LOC", "B-LOC"]) == {
        ("PER", 0, 2),
        ("LOC", 3, 4),
        ("LOC", 4, 5),
    }
    assert entities(["B-PER", "I-LOC", "E-LOC"]) == {("PER", 0, 1), ("LOC", 1, 3)}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """The bundled sample tokenized, with and without label_all_tokens."""
    from config import Config
    from trainkit import cli, data

    result = {}
    for all_tokens in ("false", "true"):
        out = tmp_path_factory.mktemp("unused")
        cfg = cli.parse_args(arguments(out, label_all_tokens=all_tokens), Config)
        tokenizer, _ = task.load_tokenizer_and_config(cfg)
        raw = data.load_raw_datasets(cfg, task.data_columns(cfg), task.FILE_READERS)
        result[all_tokens] = (task.prepare_datasets(cfg, raw, tokenizer), tokenizer, raw, cfg)
    return result


def split_word_row(dataset):
    """The index of a row with a word that became several sub-tokens."""
    return next(i for i, row in enumerate(dataset) if row["labels"].count(-100) > 2)


def test_only_the_first_sub_token_of_a_word_carries_its_tag(prepared):
    (train_set, _, names), tokenizer, raw, _ = prepared["false"]
    row = split_word_row(train_set)
    words, tags = raw["train"][row]["tokens"], raw["train"][row]["ner_tags"]
    encoded = tokenizer(words, is_split_into_words=True)
    firsts = [
        i
        for i, w in enumerate(encoded.word_ids())
        if w is not None and w != encoded.word_ids()[i - 1]
    ]
    labels = train_set[row]["labels"]
    assert [names[labels[i]] for i in firsts] == tags
    assert all(label == -100 for i, label in enumerate(labels) if i not in firsts)
    assert train_set[row]["word_labels"] == labels


def test_label_all_tokens_continues_each_entity_inside(prepared):
    (first_only, _, names), *_ = prepared["false"]
    (every, _, _), *_ = prepared["true"]
    row = split_word_row(first_only)
    for word_label, label in zip(first_only[row]["labels"], every[row]["labels"], strict=True):
        if word_label != -100:
            assert label == word_label
    later = [
        names[a]
        for a, b in zip(every[row]["labels"], first_only[row]["labels"], strict=True)
        if b == -100 and a != -100
    ]
    assert later, "no later sub-token got a label"
    assert all(tag == "O" or tag.startswith("I-") for tag in later)
    # Scores count words either way.
    assert every[row]["word_labels"] == first_only[row]["word_labels"]


def test_scores_count_each_word_once_whatever_its_sub_tokens(prepared):
    (_, eval_set, names), tokenizer, raw, cfg = prepared["false"]
    batch = task.collate(cfg, [eval_set[i] for i in range(8)], tokenizer, None)
    # Logits that give every word its true tag at its first sub-token and a wrong one elsewhere.
    right = batch["word_labels"].clamp(min=0)
    logits = torch.nn.functional.one_hot((right + 1) % len(names), len(names)).float()
    logits = (
        logits
        + 2
        * torch.nn.functional.one_hot(right, len(names))
        * (batch["word_labels"] >= 0)[..., None]
    )
    gathered = {k: v.tolist() for k, v in task.eval_predictions(cfg, None, logits, batch).items()}
    scores = task.eval_scores(cfg, 0.0, gathered, names, None)
    assert scores["eval_accuracy"] == scores["eval_f1"] == 1.0
    predicted_words = sum(tag != -100 for row in gathered["predictions"] for tag in row)
    assert predicted_words == sum(len(raw["validation"][i]["tokens"]) for i in range(8))


def test_conll_and_jsonl_files_train_the_same_model(tmp_path):
    rows = [json.loads(line) for line in (PROJECT / TINY["train_file"]).open()][:40]
    jsonl = tmp_path / "sample.jsonl"
    jsonl.write_text("".join(json.dumps(row) + "\n" for row in rows))
    conll = tmp_path / "sample.conll"
    sentences = [
        "\n".join(f"{w} {t}" for w, t in zip(r["tokens"], r["ner_tags"], strict=True)) for r in rows
    ]
    conll.write_text("-DOCSTART- O\n\n" + "\n\n".join(sentences) + "\n")
    for name, path in (("jsonl", jsonl), ("conll", conll)):
        run_train(tmp_path / name, max_steps=3, train_file=path, validation_file=path)
    a, b = final_weights(tmp_path / "jsonl"), final_weights(tmp_path / "conll")
    assert all(torch.equal(a[name], b[name]) for name in a)


def test_tag_names_travel_with_the_final_model(tmp_path):
    run_train(tmp_path / "run", max_steps=2)
    model = task.model_class().from_pretrained(tmp_path / "run" / "final")
    tags = {
        tag
        for line in (PROJECT / TINY["train_file"]).open()
        for tag in json.loads(line)["ner_tags"]
    }
    assert set(model.config.label2id) == tags


def test_classlabel_tags_keep_their_own_names(tmp_path):
    import datasets

    names = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG"]
    rows = [json.loads(line) for line in (PROJECT / TINY["train_file"]).open()][:40]
    features = datasets.Features(
        {
            "tokens": datasets.Sequence(datasets.Value("string")),
            "ner_tags": datasets.Sequence(datasets.ClassLabel(names=names)),
        }
    )
    ids = [
        {"tokens": r["tokens"], "ner_tags": [names.index(t) for t in r["ner_tags"]]} for r in rows
    ]
    path = tmp_path / "tagged.parquet"
    datasets.Dataset.from_list(ids, features=features).to_parquet(path)
    run_train(tmp_path / "run", max_steps=2, train_file=path, validation_file=path)
    model = task.model_class().from_pretrained(tmp_path / "run" / "final")
    assert [model.config.id2label[i] for i in range(len(names))] == names
