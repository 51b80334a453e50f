"""What the shared tests need to know about this task: its options for the tiny runs, and its
bad-input rows for tests/test_errors.py."""

import json
from pathlib import Path

TINY_TASK_OPTIONS = {
    "max_length": 64,
    # A prompt's tokens get two nearly cancelling gradients, the chosen sequence's and the
    # rejected one's: their small difference carries the float rounding of either. Adam divides
    # by sqrt(v), so in rarely seen positions that rounding, which differs with the process
    # count, moved weights by 1e-4 relative (1e-4 epsilon). This one keeps it from being
    # amplified, as conftest.py's does for the other tasks.
    "adam_epsilon": 1e-3,
    # The resume tests turn dropout on in the model's config to prove its random state comes
    # back; the task's default (TRL's) would switch it off again.
    "disable_dropout": "false",
}

# The formats a user's own data comes in (test_usability.py): conversations need lists.
OWN_DATA_FORMATS = (".jsonl", ".parquet")

# A wider model whose checkpoints take longer to write than its updates take to run
# (test_reliability.py): config.json names.
WIDER_MODEL = {"n_embd": 384, "n_layer": 4, "n_inner": 1536}

# use_peft's options (tests/test_lora.py): PEFT picks the target modules for the architecture.
LORA_OPTIONS = {}

# What a model loaded outside build_model needs to be scored (tests/test_lora.py): it has no
# reference model, so the batch brings the reference's log probabilities.
BARE_MODEL_OPTIONS = {"precompute_ref_log_probs": "true"}

# predict.py (tests/test_predict.py): the fields of a prediction of a pair, and plain inputs (a
# .txt file's lines) it answers.
PREDICTION_FIELDS = {"preferred", "margin", "rewards", "logps"}
PLAIN_INPUTS = ["What does the cat say?", "What does the cow eat?"]
PLAIN_PREDICTION_FIELDS = {"answer"}  # a plain input is a prompt: chat.py answers it

# (what goes wrong, options, a part of the one-sentence error); "{name}" values come from
# task_material() or the shared material in test_errors.py.
TASK_ERROR_ROWS = [
    (
        "a pair whose chosen and rejected are the same",
        {"train_file": "{same_pair}", "validation_file": "null"},
        "has the same chosen and rejected completion: it teaches nothing.",
    ),
    (
        "data without a rejected column",
        {"train_file": "{no_rejected}", "validation_file": "null"},
        "The train data has no rejected column: dpo reads prompt, chosen and rejected",
    ),
    (
        "a chosen conversation without an assistant turn",
        {"train_file": "{no_assistant}", "validation_file": "null"},
        "chosen has no assistant turn after the prompt.",
    ),
    ("beta of 0", {"beta": 0}, "beta must be"),
    ("a negative beta", {"beta": -0.1}, "beta must be"),
    (
        "a reference with another tokenizer",
        {"ref_model_name_or_path": "{other_tokenizer_model}"},
        "has another tokenizer than the model's",
    ),
    (
        "a message with an unknown role",
        {"train_file": "{unknown_role}", "validation_file": "null"},
        "has a message with role 'robot'; roles are system, user, assistant, tool.",
    ),
    (
        "texts and message lists in one pair",
        {"train_file": "{mixed_kinds}", "validation_file": "null"},
        "mixes texts and message lists",
    ),
    (
        "conversations and no chat template",
        {"tokenizer_name": "{no_template_tokenizer}"},
        "The data holds conversations (message lists) but the tokenizer has no chat template",
    ),
    (
        "every prompt longer than max_length",
        {"max_length": 4, "validation_file": "null"},
        "too few to train",
    ),
    ("an unknown loss", {"loss_type": "kto"}, "must be one of sigmoid, ipo, hinge"),
    (
        "label smoothing with a loss that has none",
        {"loss_type": "ipo", "label_smoothing": 0.1},
        "label_smoothing is sigmoid's (conservative DPO), not ipo's.",
    ),
    (
        "train and validation in different formats",
        {"validation_file": "{implicit_pairs}"},
        "has no prompt: give every row the train data's columns.",
    ),
    ("a length beyond the model", {"max_length": 100_000}, "exceeds the model's 1024 positions"),
    ("label smoothing of one half", {"label_smoothing": 0.5}, "label_smoothing must be"),
    (
        "an encoder-decoder model",
        {"config_name": "{encoder_decoder_model}"},
        "is an encoder-decoder model (t5); dpo needs a decoder-only model",
    ),
]


def task_material(root):
    """Data files with each mistake, a tokenizer without a chat template, a model whose tokenizer
    differs, and an encoder-decoder model's config."""
    from conftest import write_rows as write_jsonl  # imported here: conftest imports this file
    from transformers import AutoTokenizer, T5Config

    project = Path(__file__).resolve().parents[1]
    model = project / "assets" / "tiny-model"
    good = [json.loads(line) for line in (model.parent / "data" / "train.jsonl").open()][:20]
    robot = [{**row, "prompt": [{"role": "robot", "content": "Beep?"}]} for row in good]
    no_assistant = [
        {**row, "chosen": [{"role": "user", "content": row["chosen"][0]["content"]}]}
        for row in good
    ]
    mixed = [{**row, "chosen": row["chosen"][0]["content"]} for row in good]
    (root / "no-template").mkdir()
    (root / "no-template" / "tokenizer.json").write_bytes((model / "tokenizer.json").read_bytes())
    config = json.loads((model / "tokenizer_config.json").read_text())
    (root / "no-template" / "tokenizer_config.json").write_text(json.dumps(config))
    # The same model with one token more in its tokenizer.
    other = AutoTokenizer.from_pretrained(model)
    other.add_tokens(["<|moo|>"])
    other.save_pretrained(root / "other-tokenizer")
    (root / "other-tokenizer" / "config.json").write_bytes((model / "config.json").read_bytes())
    T5Config(d_model=32, num_layers=1, num_heads=2).save_pretrained(root / "t5")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (root / "t5" / name).write_bytes((model / name).read_bytes())
    return {
        "same_pair": write_jsonl(
            root / "same.jsonl", [{**r, "rejected": r["chosen"]} for r in good]
        ),
        "no_rejected": write_jsonl(
            root / "no-rejected.jsonl",
            [{"prompt": r["prompt"], "chosen": r["chosen"]} for r in good],
        ),
        "no_assistant": write_jsonl(root / "no-assistant.jsonl", no_assistant),
        "unknown_role": write_jsonl(root / "robot.jsonl", robot),
        "mixed_kinds": write_jsonl(root / "mixed.jsonl", mixed),
        "implicit_pairs": write_jsonl(
            root / "implicit.jsonl",
            [{k: r["prompt"] + r[k] for k in ("chosen", "rejected")} for r in good],
        ),
        "no_template_tokenizer": root / "no-template",
        "other_tokenizer_model": root / "other-tokenizer",
        "encoder_decoder_model": root / "t5",
    }
