"""What the shared tests need to know about this task: its options for the tiny runs, and its
bad-input rows for tests/test_errors.py."""

from pathlib import Path

TINY_TASK_OPTIONS = {
    # The bundled sample's column: the project's default may name that of your own data.
    "text_column_name": "text",
    # One text per sequence: micro-batches hold different numbers of label tokens, which is what
    # makes the accumulation and process guarantees worth testing.
    "packing": "false",
    "block_size": 48,
}

# The formats a user's own data comes in (test_usability.py).
OWN_DATA_FORMATS = (".csv", ".jsonl")

# A wider model whose checkpoints take longer to write than its updates take to run
# (test_reliability.py): config.json names.
WIDER_MODEL = {"n_embd": 384, "n_layer": 4, "n_inner": 1536}

# use_peft's options (tests/test_lora.py): PEFT picks the target modules for the architecture.
LORA_OPTIONS = {}

# What a model loaded outside build_model needs to be scored (tests/test_lora.py).
BARE_MODEL_OPTIONS = {}

# predict.py (tests/test_predict.py): the fields of a prediction, and plain inputs (a .txt file's
# lines) it answers.
PREDICTION_FIELDS = {"generated"}
PLAIN_INPUTS = ["The cat", "A dog walked"]
PLAIN_PREDICTION_FIELDS = PREDICTION_FIELDS

# (what goes wrong, options, a part of the one-sentence error); "{name}" values come from
# task_material() or the shared material in test_errors.py.
TASK_ERROR_ROWS = [
    (
        "a head rate for a model without a head",
        {"head_learning_rate": 1e-3},
        "head_learning_rate: this model has no head outside its base model.",
    ),
    (
        "a missing text column",
        {"text_column_name": "body"},
        "Column 'body' (text_column_name) is not in train_file",
    ),
    (
        "too few sequences for packing",
        {"packing": "true", "block_size": 256, "max_train_samples": 1},
        "too few",
    ),
    ("a bad tokenizer path", {"tokenizer_name": "./no-such-tokenizer"}, "is not a local directory"),
    ("a block size beyond the model", {"block_size": 100_000}, "exceeds the model's 256 positions"),
    ("streaming by epochs", {"streaming": "true"}, "streaming=true trains by max_steps"),
    (
        "streaming with an evaluation per epoch",
        {"streaming": "true", "max_steps": 5, "eval_strategy": "epoch"},
        "streaming=true has no epochs",
    ),
    (
        "streaming through loader workers",
        {"streaming": "true", "max_steps": 5, "dataloader_num_workers": 2},
        "set dataloader_num_workers=0",
    ),
    (
        "streaming without a validation file",
        {"streaming": "true", "max_steps": 5, "validation_file": "null"},
        "streaming=true needs a validation_file",
    ),
    (
        "a stream without the text column",
        {"streaming": "true", "max_steps": 5, "text_column_name": "body"},
        "Column 'body' is not in train_file",
    ),
    (
        "an unreadable stream",
        {"streaming": "true", "max_steps": 5, "train_file": "{not_json}"},
        "Could not load data from train_file",
    ),
    (
        "an encoder-decoder model",
        {"config_name": "{encoder_decoder_model}"},
        "is an encoder-decoder model (t5); causal-lm needs a decoder-only model",
    ),
]


def task_material(root):
    """Files only this task's rows point at: an encoder-decoder model's config (and tokenizer),
    and a jsonl file whose second line is not JSON."""
    from transformers import T5Config

    project = Path(__file__).resolve().parents[1]
    tokenizer = (project / "assets") / "tiny-model"
    T5Config(d_model=32, num_layers=1, num_heads=2).save_pretrained(root / "t5")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (root / "t5" / name).write_bytes((tokenizer / name).read_bytes())
    (root / "not.jsonl").write_text('{"text": "fine"}\nnot json at all\n')
    return {"encoder_decoder_model": root / "t5", "not_json": root / "not.jsonl"}
