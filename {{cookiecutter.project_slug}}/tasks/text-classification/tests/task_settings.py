"""What the shared tests need to know about this task: its options for the tiny runs, and its
bad-input rows for tests/test_errors.py."""

import json
from pathlib import Path

TINY_TASK_OPTIONS = {
    # The bundled sample's columns: the project's defaults may name those of your own data.
    "text_column_name": "text",
    "label_column_name": "label",
    "max_seq_length": 48,
}

# The formats a user's own data comes in (test_usability.py).
OWN_DATA_FORMATS = (".csv", ".jsonl")

# A wider model whose checkpoints take longer to write than its updates take to run
# (test_reliability.py): config.json names.
WIDER_MODEL = {"hidden_size": 384, "num_hidden_layers": 4, "intermediate_size": 1536}

# use_peft's options (tests/test_lora.py): PEFT picks the target modules for the architecture.
LORA_OPTIONS = {}

# What a model loaded outside build_model needs to be scored (tests/test_lora.py).
BARE_MODEL_OPTIONS = {}

# predict.py (tests/test_predict.py): the fields of a prediction, and plain inputs (a .txt file's
# lines) it answers.
PREDICTION_FIELDS = {"label", "score", "probabilities"}
PLAIN_INPUTS = ["what a great film", "dull and far too long"]
PLAIN_PREDICTION_FIELDS = PREDICTION_FIELDS

# (what goes wrong, options, a part of the one-sentence error); "{name}" values come from
# task_material() or the shared material in test_errors.py.
TASK_ERROR_ROWS = [
    (
        "a missing text column",
        {"text_column_name": "body"},
        "Column 'body' (text_column_name) is not in train_file",
    ),
    ("a missing label column", {"label_column_name": "sentiment"}, "Column 'sentiment'"),
    (
        "validation labels unseen in training",
        {"validation_file": "{unseen_labels}"},
        "line 1, has the label 'surprised' ('label'), which no training row has",
    ),
    (
        "a row without a label",
        {"train_file": "{missing_label}"},
        "line 3, has no label_column_name value",
    ),
    (
        "labels that do not match the model's head",
        {"model_name_or_path": "{two_label_model}"},
        "labels but the data",
    ),
    (
        "a sequence length beyond the model",
        {"max_seq_length": 100_000},
        "exceeds the model's 256 positions",
    ),
]


def task_material(root):
    """Files only this task's rows point at: a validation file with a label training never saw,
    and a model whose classification head has 2 labels (the data has 3)."""
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    project = Path(__file__).resolve().parents[1]
    assets = project / "assets"
    rows = [json.loads(line) for line in (assets / "data" / "validation.jsonl").open()][:20]
    unseen = root / "unseen.jsonl"
    unseen.write_text("".join(json.dumps({**r, "label": "surprised"}) + "\n" for r in rows))
    config = AutoConfig.from_pretrained(assets / "tiny-model", num_labels=2)
    AutoModelForSequenceClassification.from_config(config).save_pretrained(root / "two-labels")
    AutoTokenizer.from_pretrained(assets / "tiny-model").save_pretrained(root / "two-labels")
    missing = root / "missing-label.jsonl"
    missing.write_text(
        "".join(
            json.dumps({**r, "label": None if i == 2 else r["label"]}) + "\n"
            for i, r in enumerate(rows)
        )
    )
    return {
        "unseen_labels": unseen,
        "two_label_model": root / "two-labels",
        "missing_label": missing,
    }
