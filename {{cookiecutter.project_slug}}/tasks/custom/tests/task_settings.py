"""What the shared tests need to know about this task: its options for the tiny runs, and its
bad-input rows for tests/test_errors.py."""

import json
from pathlib import Path

import torch

TINY_TASK_OPTIONS = {
    # The bundled sample's columns: the project's defaults may name those of your own data.
    "feature_columns": "auto",
    "label_column_name": "label",
    # model.py at its own size, dropout off whatever its default: the guarantees compare runs
    # whose batches differ, and dropout draws differ with them (model_with_dropout turns it on).
    "config_name": "tests/model-without-dropout",
}

# The formats a user's own data comes in (test_usability.py).
OWN_DATA_FORMATS = (".csv", ".jsonl", ".parquet")

# A wider model whose checkpoints take longer to write than its updates take to run
# (test_reliability.py): config.json names.
WIDER_MODEL = {"hidden_size": 2048, "num_hidden_layers": 4}


# use_peft's options (tests/test_lora.py): model.py's MLP is no architecture PEFT knows, so
# the layers are named: adapters on both hidden layers, the output layer trained in full.
def linear_layers():
    """The names of model.py's linear layers, from the model itself: an edit of its layers (a
    norm added, another depth) moves them."""
    from model import Model

    model = Model(["x"], [0.0], [1.0], ["a", "b"])
    return [name for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)]


# Adapters on the hidden layers; the output layer, a fresh head, trained in full.
LORA_OPTIONS = {
    "lora_target_modules": ",".join(linear_layers()[:-1]),
    "lora_modules_to_save": linear_layers()[-1],
}

# What a model loaded outside build_model needs to be scored (tests/test_lora.py).
BARE_MODEL_OPTIONS = {}

# predict.py (tests/test_predict.py): the fields of a prediction, and plain inputs (a .txt file's
# lines) it answers.
PREDICTION_FIELDS = {"label", "score", "probabilities"}
PLAIN_INPUTS = ["53.7,19.4,187.8,2390.4", "39.1,18.7,181.0,3750.0"]
PLAIN_PREDICTION_FIELDS = PREDICTION_FIELDS

# (what goes wrong, options, a part of the one-sentence error); "{name}" values come from
# task_material() or the shared material in test_errors.py.
TASK_ERROR_ROWS = [
    (
        "layer-wise decay for a model without numbered layers",
        {"layerwise_lr_decay": 0.5},
        "layerwise_lr_decay: this model has no numbered layers to decay over.",
    ),
    ("a missing label column", {"label_column_name": "species"}, "Column 'species'"),
    (
        "a feature column not in the data",
        {"feature_columns": "beak,bill_depth_mm"},
        "Column 'beak' (feature_columns[0]) is not in train_file",
    ),
    ("a text column among the features", {"train_file": "{with_text}"}, "holds string, not"),
    ("a list column among the features", {"train_file": "{with_list}"}, "holds list, not"),
    ("a missing value", {"train_file": "{with_gap}"}, "Row 1 of the train data has no number"),
    (
        "a row without a label",
        {"train_file": "{no_label}"},
        "line 4, has no label_column_name value",
    ),
    (
        "validation labels unseen in training",
        {"validation_file": "{unseen_labels}"},
        "line 1, has the label 'emperor' ('label'), which no training row has",
    ),
    (
        "labels that do not match the saved model",
        {"model_name_or_path": "{two_label_model}"},
        "has labels ['a', 'b'] but the data",
    ),
    (
        "columns that do not match the saved model",
        {"model_name_or_path": "{two_column_model}"},
        "reads columns ['x', 'y'], not",
    ),
    (
        "a transformers-only option",
        {"gradient_checkpointing": "true"},
        "gradient_checkpointing applies to transformers models",
    ),
    (
        "a model config given as pretrained weights",
        {"model_name_or_path": "assets/tiny-model"},
        "holds no trained model",
    ),
    (
        "a model directory without config.json",
        {"model_name_or_path": "{empty_directory}"},
        "holds no readable config.json",
    ),
]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def task_material(root):
    """Data files with each mistake, and saved models that read other labels and columns."""
    from model import Model

    project = Path(__file__).resolve().parents[1]
    assets = project / "assets"
    good = [json.loads(line) for line in (assets / "data" / "train.jsonl").open()][:40]
    gap = [dict(row) for row in good]
    gap[1]["body_mass_g"] = None
    shape = {"feature_mean": [0.0, 0.0], "feature_std": [1.0, 1.0], "hidden_size": 4}
    Model(["x", "y"], label_names=["adelie", "chinstrap", "gentoo"], **shape).save_pretrained(
        root / "two-columns"
    )
    columns = [name for name in good[0] if name != "label"]
    Model(columns, [0.0] * 4, [1.0] * 4, ["a", "b"], hidden_size=4).save_pretrained(
        root / "two-labels"
    )
    (root / "empty-model").mkdir()
    return {
        "with_text": write_jsonl(
            root / "text.jsonl", [{**row, "island": "Biscoe"} for row in good]
        ),
        "with_list": write_jsonl(root / "list.jsonl", [{**row, "size": [1, 2]} for row in good]),
        "with_gap": write_jsonl(root / "gap.jsonl", gap),
        "no_label": write_jsonl(
            root / "no-label.jsonl",
            [{**r, "label": None} if i == 3 else r for i, r in enumerate(good)],
        ),
        "unseen_labels": write_jsonl(
            root / "unseen.jsonl", [{**r, "label": "emperor"} for r in good]
        ),
        "two_label_model": root / "two-labels",
        "two_column_model": root / "two-columns",
        "empty_directory": root / "empty-model",
    }
