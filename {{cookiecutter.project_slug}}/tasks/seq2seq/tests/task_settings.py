"""What the shared tests need to know about this task: its options for the tiny runs, and its
bad-input rows for tests/test_errors.py."""

import json
from pathlib import Path

TINY_TASK_OPTIONS = {
    # The bundled sample's columns: the project's defaults may name those of your own data.
    "text_column": "document",
    "summary_column": "summary",
    "max_source_length": 64,
    "max_target_length": 24,
    # Every evaluation of the shared tests generates, so eval exactness covers generation. Up to
    # 30 new tokens, longer than the summaries: some generations end at </s>, others run on, so
    # the processes gather generated tokens of different lengths (at 12, all ran to the end and
    # a loop that gathered them unpadded passed; scripts/mutants.py).
    "predict_with_generate": "true",
    "generation_max_length": 30,
    # A third of the shared tiny rate: at 3e-3 this T5 amplifies float rounding (1e-7 at update 1)
    # past the comparisons' 1e-5 within 15 updates; at 1e-3 it stays near rounding.
    "learning_rate": 1e-3,
}

# The formats a user's own data comes in (test_usability.py).
OWN_DATA_FORMATS = (".csv", ".jsonl")

# A wider model whose checkpoints take longer to write than its updates take to run
# (test_reliability.py): config.json names.
WIDER_MODEL = {"d_model": 384, "d_ff": 1536, "num_layers": 4, "num_decoder_layers": 4}

# use_peft's options (tests/test_lora.py): PEFT picks the target modules for the architecture.
LORA_OPTIONS = {}

# What a model loaded outside build_model needs to be scored (tests/test_lora.py).
BARE_MODEL_OPTIONS = {}

# predict.py (tests/test_predict.py): the fields of a prediction, and plain inputs (a .txt file's
# lines) it answers.
PREDICTION_FIELDS = {"generated"}
PLAIN_INPUTS = ["the cat sat on the mat all day", "rain fell on the town"]
PLAIN_PREDICTION_FIELDS = PREDICTION_FIELDS

# (what goes wrong, options, a part of the one-sentence error); "{name}" values come from
# task_material() or the shared material in test_errors.py.
TASK_ERROR_ROWS = [
    ("a missing source column", {"text_column": "article"}, "Column 'article' (text_column)"),
    ("a missing target column", {"summary_column": "abstract"}, "Column 'abstract'"),
    (
        "an empty target text",
        {"train_file": "{empty_target}"},
        "line 2, has no summary_column value",
    ),
    (
        "a number where a text belongs",
        {"train_file": "{number_target}"},
        "Row 0 of the train data has 7, not text, in 'summary'",
    ),
    (
        "a decoder-only model",
        {"config_name": "{decoder_only_model}"},
        "is a decoder-only model (gpt2); seq2seq needs an encoder-decoder",
    ),
    (
        "a generation metric without generation",
        {
            "predict_with_generate": "false",
            "metric_for_best_model": "eval_rouge1",
            "eval_strategy": "epoch",
        },
        "eval_rouge1 is not one of eval_loss",
    ),
    ("zero beams", {"generation_num_beams": 0}, "generation_num_beams must be at least 1"),
]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def task_material(root):
    """Data files with each mistake, and a decoder-only model's config."""
    from transformers import GPT2Config

    project = Path(__file__).resolve().parents[1]
    assets = project / "assets"
    good = [json.loads(line) for line in (assets / "data" / "train.jsonl").open()][:20]
    empty = [dict(row) for row in good]
    empty[1]["summary"] = "  "
    GPT2Config(n_embd=32, n_layer=1, n_head=2).save_pretrained(root / "gpt2")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (root / "gpt2" / name).write_bytes((assets / "tiny-model" / name).read_bytes())
    return {
        "empty_target": write_jsonl(root / "empty-target.jsonl", empty),
        "number_target": write_jsonl(root / "number.jsonl", [{**r, "summary": 7} for r in good]),
        "decoder_only_model": root / "gpt2",
    }
