"""The token-classification task: one tag per word (named entities, parts of speech), a
token-classification head on an encoder (BERT-style) or any model with a
`ForTokenClassification` class. Options and behaviour follow transformers' run_ner.py.

train.py knows no task: it uses the names below, in this order, and nothing else of this
module. A new task is a folder with a task.py that defines the same names (and its tests).

    NAME, model_class()                  the task's name (recorded in checkpoints) and the
                                         class that loads final/ (a function: importing
                                         task.py needs no transformers)
    Options                              the task's options, joined with the loop's in train.py
    FILE_READERS                         {file ending: reader} for data files the datasets
                                         library cannot read (here CoNLL)
    load_tokenizer_and_config(cfg)       -> (tokenizer, model config); cheap, so checked first
    eval_metric_names(cfg)               what evaluation reports, checked before training
    data_columns(cfg)                    {option: column} the task reads, checked on loading
    prepare_datasets(cfg, raw, tokenizer)
                                         -> (train, validation, label_names): tokenized datasets
    collate(cfg, rows, tokenizer, epoch) -> a batch of tensors whose "labels" hold -100 wherever
                                            there is nothing to predict; `epoch` is None in
                                            evaluation
    build_model(cfg, config, label_names)
                                         -> the model: pretrained weights or fresh from config
    target_counts(batch)                 -> each sample's number of targets (LongTensor [batch])
    count_tokens(batch)                  -> input positions in the batch, for throughput and MFU
    summed_losses(cfg, model, batch)     -> (each sample's loss summed over its targets, logits)
    train_metrics(accelerator)           -> what the task logs beside the loss ({} for none)
    eval_predictions(cfg, model, logits, batch)
                                         -> per-sample tensors evaluation gathers ({} for none);
                                            `model` is unwrapped, so it can generate
    eval_scores(cfg, eval_loss, gathered, label_names, tokenizer)
                                         -> {"eval_loss": ..., "eval_<metric>": ...}
    save_model(model, tokenizer, directory, state_dict)
                                         what final/ holds
    predict(cfg, model, inputs, tokenizer, generation)
                                         -> for predict.py, one dict per input (a row of the
                                            training format, or a plain string): what the
                                            model says

Why losses come back as per-sample sums with target counts, not means: an update's loss is the
mean over every target of its k micro-batches on every process. Sums add up across micro-batches
and processes and are divided once by the total count; a mean of means would weight a short
micro-batch like a full one, so accumulation and process count would change the numbers. Here a
sample's targets are its labelled sub-tokens, so a long sentence weighs more than a short one.
"""

import functools
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from trainkit import pretrained
from trainkit.conll import read_conll
from trainkit.options import UsageError, option

NAME = "token-classification"
# CoNLL files (conll.py), besides the formats the datasets library reads (data.py).
FILE_READERS = {".conll": read_conll}


def model_class():
    """The class that loads final/ (imported here: `--help` needs no transformers)."""
    from transformers import AutoModelForTokenClassification

    return AutoModelForTokenClassification


@dataclass
class Options:
    text_column_name: str = option("tokens", "Column holding each sentence's list of words.")
    label_column_name: str = option(
        "ner_tags", "Column holding each sentence's list of tags (strings, or ClassLabel ids)."
    )
    max_seq_length: int = option(128, "Sentences are truncated to this many sub-tokens.", above=0)
    label_all_tokens: bool = option(
        False, "Train every sub-token of a word (B- as I-); false: its first. Scores count words."
    )
    metrics: str = option(
        "metrics/seqeval",
        "Comma-separated evaluate metrics: local module directories (offline) or hub names.",
        path=True,
    )


def data_columns(cfg):
    return {"text_column_name": cfg.text_column_name, "label_column_name": cfg.label_column_name}


def load_tokenizer_and_config(cfg):
    tokenizer, config = pretrained.load_tokenizer_and_config(cfg, length_option="max_seq_length")
    if not tokenizer.is_fast:
        # Only fast tokenizers say which word each sub-token came from.
        raise UsageError(f"The tokenizer of {cfg.model_name_or_path} is not a fast tokenizer.")
    return tokenizer, config


@functools.cache
def load_metric(names):
    # evaluate is imported only when a run evaluates: it is slow to import.
    import evaluate

    paths = [str(Path(n).resolve()) if Path(n).is_dir() else n for n in names.split(",")]
    return evaluate.combine(paths)


def eval_metric_names(cfg):
    scores = load_metric(cfg.metrics).compute(predictions=[["B-X"]], references=[["B-X"]])
    return ["eval_loss", *(f"eval_{name}" for name in scores)]


def tag_names(raw, column):
    """The tags in sorted order (a ClassLabel keeps its own), checked to be IOB2 or IOBES."""
    import datasets

    feature = raw["train"].features[column].feature
    if isinstance(feature, datasets.ClassLabel):
        names = feature.names
    elif feature.dtype != "string":
        raise UsageError(f"Column {column!r} holds unnamed numbers; give the tags as strings.")
    else:
        names = sorted(set().union(*raw["train"][column]))  # data.py checked validation's
    odd = [name for name in names if name != "O" and name[:2] not in ("B-", "I-", "E-", "S-")]
    if odd:
        raise UsageError(
            f"Tags {odd[:3]} are not IOB2 or IOBES: O, or B-, I-, E-, S- and an entity type."
        )
    return names


def prepare_datasets(cfg, raw, tokenizer):
    for column in (cfg.text_column_name, cfg.label_column_name):
        # A list column's feature (Sequence or List, by datasets version) has an item feature.
        if not hasattr(raw["train"].features[column], "feature"):
            raise UsageError(
                f"Column {column!r} holds single values, not a list per row (a csv file cannot "
                "hold lists: use jsonl, parquet or .conll)."
            )
    label_names = tag_names(raw, cfg.label_column_name)
    tag_ids = {name: i for i, name in enumerate(label_names)}
    # With label_all_tokens a word's later sub-tokens continue its entity: B-X becomes I-X.
    inside = [
        tag_ids.get("I-" + name[2:], i) if name[:2] == "B-" else i
        for i, name in enumerate(label_names)
    ]
    # datasets caches map() by hashing tokenize and what it reads: plain values, not cfg.
    words, tags = cfg.text_column_name, cfg.label_column_name
    max_length, all_tokens = cfg.max_seq_length, cfg.label_all_tokens
    named = hasattr(raw["train"].features[tags].feature, "names")  # a ClassLabel's ids

    def tokenize(rows, indices, split):
        encoded = tokenizer(
            rows[words], is_split_into_words=True, truncation=True, max_length=max_length
        )
        labels, word_labels = [], []
        for i, (row_words, row_tags) in enumerate(zip(rows[words], rows[tags], strict=True)):
            if not row_words:
                raise UsageError(f"Row {indices[i]} of the {split} data has no words.")
            if len(row_words) != len(row_tags):
                raise UsageError(
                    f"Row {indices[i]} of the {split} data has {len(row_words)} words but "
                    f"{len(row_tags)} tags."
                )
            ids = row_tags if named else [tag_ids[tag] for tag in row_tags]
            # labels: what the loss trains on; word_labels: each word's tag at its first
            # sub-token, what evaluation scores. -100 marks what is neither.
            row_labels, row_word_labels, previous = [], [], None
            for word in encoded.word_ids(i):
                if word is None:  # [CLS], [SEP] and the like
                    row_labels.append(-100)
                    row_word_labels.append(-100)
                elif word != previous:  # a word's first sub-token
                    row_labels.append(ids[word])
                    row_word_labels.append(ids[word])
                else:  # its later sub-tokens
                    row_labels.append(inside[ids[word]] if all_tokens else -100)
                    row_word_labels.append(-100)
                previous = word
            labels.append(row_labels)
            word_labels.append(row_word_labels)
        return {"input_ids": encoded["input_ids"], "labels": labels, "word_labels": word_labels}

    tokenized = {
        split: rows.map(
            functools.partial(tokenize, split=split),
            batched=True,
            with_indices=True,
            remove_columns=rows.column_names,
            num_proc=cfg.preprocessing_num_workers,
        )
        for split, rows in raw.items()
    }
    return tokenized["train"], tokenized["validation"], label_names


def collate(cfg, rows, tokenizer, epoch):
    batch = tokenizer.pad([{"input_ids": row["input_ids"]} for row in rows], return_tensors="pt")
    # Label rows are padded with -100 like the input ids: padding is neither trained nor scored.
    # The attention mask marks each row's tokens, in order, on whichever side padding went.
    tokens = batch["attention_mask"].bool()
    for key in ("labels", "word_labels"):
        batch[key] = torch.full_like(batch["input_ids"], -100)
        batch[key][tokens] = torch.tensor([label for row in rows for label in row[key]])
    return batch


def build_model(cfg, config, label_names):
    heads = [name for name in config.architectures or [] if name.endswith("ForTokenClassification")]
    if cfg.model_name_or_path and heads and config.num_labels != len(label_names):
        raise UsageError(
            f"{cfg.model_name_or_path} has {config.num_labels} tags but the data has "
            f"{len(label_names)}."
        )
    # The tag names travel with the saved model, so predictions come back as names.
    config.num_labels = len(label_names)
    config.id2label = dict(enumerate(label_names))
    config.label2id = {name: i for i, name in enumerate(label_names)}
    return pretrained.load_model(model_class(), cfg, config)


def target_counts(batch):
    return (batch["labels"] != -100).sum(1)


def count_tokens(batch):
    return int(batch["attention_mask"].sum())


def summed_losses(cfg, model, batch):
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    labels = batch["labels"]
    losses = F.cross_entropy(
        logits.float().flatten(0, 1), labels.flatten(), ignore_index=-100, reduction="none"
    )
    return losses.view(labels.shape).sum(1), logits


def train_metrics(accelerator):
    return {}


def eval_predictions(cfg, model, logits, batch):
    words = batch["word_labels"]
    return {"predictions": logits.argmax(-1).masked_fill(words == -100, -100), "references": words}


def eval_scores(cfg, eval_loss, gathered, label_names, tokenizer):
    # One tag per word that survived truncation, as names: entities are read from the names.
    predictions, references = [], []
    for predicted, reference in zip(gathered["predictions"], gathered["references"], strict=True):
        kept = [i for i, tag in enumerate(reference) if tag != -100]
        predictions.append([label_names[predicted[i]] for i in kept])
        references.append([label_names[reference[i]] for i in kept])
    scores = load_metric(cfg.metrics).compute(predictions=predictions, references=references)
    return {"eval_loss": eval_loss, **{f"eval_{name}": value for name, value in scores.items()}}


def save_model(model, tokenizer, directory, state_dict):
    pretrained.save_model(model, tokenizer, directory, state_dict)


def predict(cfg, model, inputs, tokenizer, generation):
    """A tag per word, read at its first sub-token (None for words max_seq_length cut off);
    plain strings are split into words at spaces."""
    words = [row.split() if isinstance(row, str) else row[cfg.text_column_name] for row in inputs]
    batch = tokenizer(
        words, is_split_into_words=True, truncation=True, max_length=cfg.max_seq_length,
        padding=True, return_tensors="pt",
    ).to(model.device)  # fmt: skip
    tags = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    tags = tags.argmax(-1).tolist()
    said = []
    for i, sentence in enumerate(words):
        first = {}
        for position, word in enumerate(batch.word_ids(i)):
            first.setdefault(word, position)
        tagged = [tags[i][first[w]] if w in first else None for w in range(len(sentence))]
        said.append({"tags": [None if t is None else model.config.id2label[t] for t in tagged]})
    return said
