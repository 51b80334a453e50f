"""What the shared tests need to know about this task: its options for the tiny runs, and its
bad-input rows for tests/test_errors.py."""

import json
from pathlib import Path

TINY_TASK_OPTIONS = {
    # The bundled sample's columns: the project's defaults may name those of your own data.
    "text_column_name": "tokens",
    "label_column_name": "ner_tags",
    "max_seq_length": 48,
}

# The formats a user's own data comes in (test_usability.py): csv cannot hold lists of words.
OWN_DATA_FORMATS = (".jsonl", ".parquet")


def both_splits(name):
    """A bad file given as both splits, so the bundled validation split's tags do not fail the
    check first."""
    placeholder = "{" + name + "}"
    return {"train_file": placeholder, "validation_file": placeholder}


# A wider model whose checkpoints take longer to write than its updates take to run
# (test_reliability.py): config.json names.
WIDER_MODEL = {"hidden_size": 384, "num_hidden_layers": 4, "intermediate_size": 1536}

# use_peft's options (tests/test_lora.py): PEFT picks the target modules for the architecture.
LORA_OPTIONS = {}

# What a model loaded outside build_model needs to be scored (tests/test_lora.py).
BARE_MODEL_OPTIONS = {}

# predict.py (tests/test_predict.py): the fields of a prediction, and plain inputs (a .txt file's
# lines) it answers.
PREDICTION_FIELDS = {"tags"}
PLAIN_INPUTS = ["Ben Okafor moved to Kyoto .", "Acme Corp hired Dan ."]
PLAIN_PREDICTION_FIELDS = PREDICTION_FIELDS

# (what goes wrong, options, a part of the one-sentence error); "{name}" values come from
# task_material() or the shared material in test_errors.py.
TASK_ERROR_ROWS = [
    (
        "a missing text column",
        {"text_column_name": "body"},
        "Column 'body' (text_column_name) is not in train_file",
    ),
    ("a missing tag column", {"label_column_name": "tags"}, "Column 'tags'"),
    (
        "words and tags of unequal length",
        both_splits("unequal"),
        "Row 1 of the train data has 3 words but 2 tags",
    ),
    ("a sentence with no words", both_splits("no_words"), "Row 0 of the train data has no"),
    ("an unknown tag scheme", both_splits("plain_tags"), "are not IOB2 or IOBES"),
    ("tag ids without names", both_splits("tag_ids"), "holds unnamed numbers"),
    ("a text where words belong", both_splits("text_not_words"), "holds single values"),
    (
        "validation tags unseen in training",
        {"validation_file": "{unseen_tags}"},
        "line 1, has the label 'B-DATE' ('ner_tags'), which no training row has",
    ),
    ("a CoNLL line without a tag", both_splits("conll_without_tag"), "has a word but no tag"),
    (
        "tags that do not match the model's head",
        {"model_name_or_path": "{two_tag_model}"},
        "tags but the data",
    ),
    (
        "a sequence length beyond the model",
        {"max_seq_length": 100_000},
        "exceeds the model's 256 positions",
    ),
]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def task_material(root):
    """Data files with each mistake, and a model whose head has 2 tags (the data has 7)."""
    from transformers import AutoConfig, AutoModelForTokenClassification, AutoTokenizer

    project = Path(__file__).resolve().parents[1]
    assets = project / "assets"
    good = [json.loads(line) for line in (assets / "data" / "train.jsonl").open()][:20]
    pair = {"tokens": ["Ada", "met", "Ben"], "ner_tags": ["B-PER", "O", "B-PER"]}
    values = {
        "unequal": write_jsonl(root / "unequal.jsonl", [pair, {**pair, "ner_tags": ["O", "O"]}]),
        "no_words": write_jsonl(root / "no-words.jsonl", [{"tokens": [], "ner_tags": []}, pair]),
        "plain_tags": write_jsonl(
            root / "plain.jsonl", [{**pair, "ner_tags": ["PER", "O", "PER"]}]
        ),
        "tag_ids": write_jsonl(root / "ids.jsonl", [{**pair, "ner_tags": [1, 0, 1]}]),
        "text_not_words": write_jsonl(root / "text.jsonl", [{**pair, "tokens": "Ada met Ben"}]),
        "unseen_tags": write_jsonl(
            root / "unseen.jsonl",
            [{**row, "ner_tags": ["B-DATE"] * len(row["tokens"])} for row in good],
        ),
    }
    conll = root / "no-tag.conll"
    conll.write_text("Ada B-PER\nmet\nBen B-PER\n")
    config = AutoConfig.from_pretrained(assets / "tiny-model", num_labels=2)
    AutoModelForTokenClassification.from_config(config).save_pretrained(root / "two-tags")
    AutoTokenizer.from_pretrained(assets / "tiny-model").save_pretrained(root / "two-tags")
    return {**values, "conll_without_tag": conll, "two_tag_model": root / "two-tags"}
