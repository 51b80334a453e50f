"""What the shared tests need to know about this task: its options for the tiny runs, and its
bad-input rows for tests/test_errors.py."""

import json
from pathlib import Path

TINY_TASK_OPTIONS = {
    # One conversation per row: the shared guarantee tests count rows (54 rows make uneven
    # accumulation windows), and rows of different lengths hold different numbers of trained
    # tokens. Packed rows keep the numbers too: test_task.py runs accumulation packed.
    "packing": "false",
    "max_length": 64,
}

# The formats a user's own data comes in (test_usability.py): conversations need lists.
OWN_DATA_FORMATS = (".jsonl", ".parquet")

# A wider model whose checkpoints take longer to write than its updates take to run
# (test_reliability.py): config.json names.
WIDER_MODEL = {"n_embd": 384, "n_layer": 4, "n_inner": 1536}

# use_peft's options (tests/test_lora.py): PEFT picks the target modules for the architecture.
LORA_OPTIONS = {}

# What a model loaded outside build_model needs to be scored (tests/test_lora.py).
BARE_MODEL_OPTIONS = {}

# predict.py (tests/test_predict.py): the fields of a prediction, and plain inputs (a .txt file's
# lines) it answers.
PREDICTION_FIELDS = {"answer"}
PLAIN_INPUTS = ["What does the cat say?", "What does the cow eat?"]
PLAIN_PREDICTION_FIELDS = PREDICTION_FIELDS

# (what goes wrong, options, a part of the one-sentence error); "{name}" values come from
# task_material() or the shared material in test_errors.py.
TASK_ERROR_ROWS = [
    (
        "data in none of the formats",
        {"train_file": "{body_only}", "validation_file": "null"},
        "The train data has none of the columns sft reads: messages (conversations), "
        "prompt and completion, or 'text' (dataset_text_field); it has ['body'].",
    ),
    (
        "a prompt without completions",
        {"train_file": "{prompt_only}", "validation_file": "null"},
        "The train data has no completion column: it has ['prompt'].",
    ),
    (
        "a message with an unknown role",
        {"train_file": "{unknown_role}", "validation_file": "null"},
        "has a message with role 'robot'; roles are system, user, assistant, tool.",
    ),
    (
        "conversations and no chat template",
        {"tokenizer_name": "{no_template_tokenizer}"},
        "The data holds conversations (messages) but the tokenizer has no chat template",
    ),
    (
        "assistant_only_loss with a template without generation markers",
        {"assistant_only_loss": "true", "chat_template_path": "{plain_template}"},
        "assistant_only_loss needs a chat template that marks the assistant's turns",
    ),
    (
        "assistant_only_loss on prompt/completion data",
        {"assistant_only_loss": "true", "train_file": "{pairs}", "validation_file": "null"},
        "assistant_only_loss needs conversations (a messages column); this data is "
        "prompt-completion.",
    ),
    (
        "a prompt longer than max_length",
        {"train_file": "{long_prompt}", "validation_file": "null", "max_length": 16},
        "with max_length=16 none of its completion would be trained. Raise max_length.",
    ),
    (
        "an empty completion",
        {"train_file": "{empty_completion}", "validation_file": "null"},
        "needs a prompt and a non-empty completion, both text.",
    ),
    (
        "a missing chat template file",
        {"chat_template_path": "./no-such-template.jinja"},
        "chat_template_path no-such-template.jinja is not a file.",
    ),
    (
        "train and validation in different formats",
        {"validation_file": "{pairs}"},
        "The validation data is prompt-completion but the train data is messages",
    ),
    ("an unknown packing strategy", {"packing_strategy": "ffd"}, "must be one of bfd, wrapped"),
    ("a length beyond the model", {"max_length": 100_000}, "exceeds the model's 1024 positions"),
    (
        "an encoder-decoder model",
        {"config_name": "{encoder_decoder_model}"},
        "is an encoder-decoder model (t5); sft needs a decoder-only model",
    ),
]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def as_pairs(conversations):
    """Prompt/completion rows from conversations: a user turn and the answer to it."""
    return [
        {"prompt": messages[i]["content"], "completion": messages[i + 1]["content"]}
        for messages in conversations
        for i in range(len(messages) - 1)
        if messages[i]["role"] == "user"
    ]


def task_material(root):
    """Data files with each mistake, a tokenizer without a chat template, a template without
    generation markers, and an encoder-decoder model's config."""
    from transformers import T5Config

    project = Path(__file__).resolve().parents[1]
    model = (project / "assets") / "tiny-model"
    good = [json.loads(line)["messages"] for line in (model.parent / "data" / "train.jsonl").open()]
    pairs = as_pairs(good[:20])
    robot = [m if m["role"] != "user" else {**m, "role": "robot"} for m in good[0]]
    (root / "no-template").mkdir()
    (root / "no-template" / "tokenizer.json").write_bytes((model / "tokenizer.json").read_bytes())
    config = json.loads((model / "tokenizer_config.json").read_text())
    (root / "no-template" / "tokenizer_config.json").write_text(json.dumps(config))
    # The bundled template without its generation markers.
    template = (model / "chat_template.jinja").read_text()
    for marker in ("{% generation %}", "{% endgeneration %}"):
        template = template.replace(marker, "")
    (root / "plain.jinja").write_text(template)
    T5Config(d_model=32, num_layers=1, num_heads=2).save_pretrained(root / "t5")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (root / "t5" / name).write_bytes((model / name).read_bytes())
    return {
        "body_only": write_jsonl(root / "body.jsonl", [{"body": "hello"}] * 20),
        "prompt_only": write_jsonl(root / "prompt.jsonl", [{"prompt": p["prompt"]} for p in pairs]),
        "unknown_role": write_jsonl(root / "robot.jsonl", [{"messages": robot}] * 20),
        "no_template_tokenizer": root / "no-template",
        "plain_template": root / "plain.jinja",
        "pairs": write_jsonl(root / "pairs.jsonl", pairs),
        "long_prompt": write_jsonl(
            root / "long.jsonl", [{"prompt": "Tell me. " * 20, "completion": "Yes."}] * 20
        ),
        "empty_completion": write_jsonl(
            root / "empty-completion.jsonl", [{**p, "completion": ""} for p in pairs]
        ),
        "encoder_decoder_model": root / "t5",
    }
