"""What the shared tests need to know about this task: its options for the tiny runs, and its
bad-input rows for tests/test_errors.py."""

import json
import shutil
from pathlib import Path

TINY_TASK_OPTIONS = {
    # The bundled sample's columns: the project's defaults may name those of your own data.
    "image_column_name": "image",
    "label_column_name": "label",
    # Training augmentation stays on (its defaults), so every guarantee covers it too.
    "min_crop_scale": 0.08,
    "horizontal_flip": "true",
}

# The formats a user's own data comes in (test_usability.py).
OWN_DATA_FORMATS = (".csv", ".jsonl", ".parquet")

# A wider model whose checkpoints take longer to write than its updates take to run
# (test_reliability.py): config.json names.
WIDER_MODEL = {"hidden_size": 384, "num_hidden_layers": 4, "intermediate_size": 1536}

# use_peft's options (tests/test_lora.py): PEFT has no default target modules for ViT, so they
# are named: the attention's query and value projections (transformers 5 names).
LORA_OPTIONS = {"lora_target_modules": "q_proj,v_proj"}

# What a model loaded outside build_model needs to be scored (tests/test_lora.py).
BARE_MODEL_OPTIONS = {}

# predict.py (tests/test_predict.py): the fields of a prediction, and plain inputs (a .txt file's
# lines) it answers.
PREDICTION_FIELDS = {"label", "score", "probabilities"}
IMAGES = Path(__file__).resolve().parents[1] / "assets/data/images"
PLAIN_INPUTS = [str(IMAGES / "validation/0000.png"), str(IMAGES / "validation/0001.png")]
PLAIN_PREDICTION_FIELDS = PREDICTION_FIELDS

# (what goes wrong, options, a part of the one-sentence error); "{name}" values come from
# task_material() or the shared material in test_errors.py.
TASK_ERROR_ROWS = [
    (
        "a missing image column",
        {"image_column_name": "picture"},
        "Column 'picture' (image_column_name) is not in train_file",
    ),
    ("a missing label column", {"label_column_name": "shape"}, "Column 'shape'"),
    (
        "a missing image file",
        {"train_file": "{missing_image}"},
        "Row 2 of the train data names",
    ),
    ("a corrupt image", {"train_file": "{corrupt_image}"}, "cannot be read"),
    (
        "an image column that holds numbers",
        {"train_file": "{numbers_as_images}"},
        "Column 'image' of the train data holds int64, not images",
    ),
    (
        "an image column that holds text",
        {"train_file": "{text_as_images}"},
        "Row 0 of the train data names",
    ),
    (
        "a class folder with no images",
        {"train_dir": "{empty_class_folder}"},
        "holds no images",
    ),
    ("a missing image folder", {"train_dir": "{flat_folder}/no-such-folder"}, "does not exist"),
    (
        "an image folder without class folders",
        {"train_dir": "{flat_folder}"},
        "holds no class folders",
    ),
    (
        "validation_dir without train_dir",
        {"validation_dir": "{flat_folder}"},
        "validation_dir needs train_dir",
    ),
    ("a text model's config", {"config_name": "{text_model}"}, "has no image processor"),
    ("a tokenizer for images", {"tokenizer_name": "bert-base-uncased"}, "applies to text"),
    ("a crop larger than the image", {"min_crop_scale": 1.5}, "must be at most 1"),
    (
        "a row without a label",
        {"train_file": "{no_label}"},
        "line 4, has no label_column_name value",
    ),
    (
        "validation labels unseen in training",
        {"validation_file": "{unseen_labels}"},
        "line 1, has the label 'hexagon' ('label'), which no training row has",
    ),
]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def task_material(root):
    """Data files with each mistake (their image paths absolute), folders of images laid out
    wrongly, and a text model's directory."""
    from transformers import BertConfig

    project = Path(__file__).resolve().parents[1]
    data = (project / "assets") / "data"
    good = [json.loads(line) for line in (data / "train.jsonl").open()][:40]
    good = [{**row, "image": str(data / row["image"])} for row in good]
    (root / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    empty_class = root / "empty-class"
    for label in ("circle", "square"):
        (empty_class / label).mkdir(parents=True)
    shutil.copy(good[0]["image"], empty_class / "circle" / "a.png")
    (root / "flat").mkdir()
    shutil.copy(good[0]["image"], root / "flat" / "a.png")
    BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2).save_pretrained(
        root / "text-model"
    )

    def changed(row_index, **values):
        return [{**r, **values} if i == row_index else r for i, r in enumerate(good)]

    return {
        "missing_image": write_jsonl(root / "missing.jsonl", changed(2, image="gone.png")),
        "corrupt_image": write_jsonl(
            root / "corrupt.jsonl", changed(1, image=str(root / "corrupt.png"))
        ),
        "numbers_as_images": write_jsonl(
            root / "numbers.jsonl", [{**r, "image": i} for i, r in enumerate(good)]
        ),
        "text_as_images": write_jsonl(
            root / "text.jsonl", [{**r, "image": "a red circle"} for r in good]
        ),
        "no_label": write_jsonl(root / "no-label.jsonl", changed(3, label=None)),
        "unseen_labels": write_jsonl(
            root / "unseen.jsonl", [{**r, "label": "hexagon"} for r in good]
        ),
        "empty_class_folder": empty_class,
        "flat_folder": root / "flat",
        "text_model": root / "text-model",
    }
