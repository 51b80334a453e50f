"""Bad input: every row exits with status 2 and one plain sentence, before expensive work where
possible, and leaves the files already on disk as they were (docs/troubleshooting.md).

Rows run train.main() in-process (the same code path as the command line, minus a Python start);
test_cli_prints_one_line_and_no_traceback checks the real command line once.
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from accelerate.state import AcceleratorState
from conftest import PROJECT, arguments, environment, run_train, tree_digest
from task_settings import TASK_ERROR_ROWS, task_material

import train

ROWS = [
    (
        "an unknown option",
        {"lernin_rate": 1},
        "Unknown option lernin_rate. Did you mean learning_rate?",
    ),
    ("a wrong type", {"max_steps": "abc"}, "max_steps expects int"),
    ("a boolean that is not true/false", {"gradient_checkpointing": "yes"}, "expects bool"),
    ("a negative learning rate", {"learning_rate": -1}, "learning_rate must not be negative"),
    (
        "LoRA on a model without pretrained weights",
        {"use_peft": "true"},
        "use_peft needs pretrained weights (model_name_or_path) to adapt.",
    ),
    (
        "LoRA target modules that match nothing",
        {
            "use_peft": "true",
            "model_name_or_path": "{previous_run}/final",
            "lora_target_modules": "no_such_layer",
        },
        "lora_target_modules: no module of the model is called 'no_such_layer'; its linear",
    ),
    ("merge_adapter without LoRA", {"merge_adapter": "true"}, "merge_adapter merges LoRA"),
    (
        "a push to a hub that cannot be reached (offline here)",
        {"push_to_hub": "true"},
        "push_to_hub: the Hugging Face Hub cannot be reached as a logged-in user",
    ),
    ("4-bit weights without LoRA", {"load_in_4bit": "true"}, "load_in_4bit freezes the weights"),
    (
        "fp16 on a CPU (it would train in fp32)",
        {"mixed_precision": "fp16"},
        "mixed_precision=fp16 does not run on CPU; use bf16 or no.",
    ),
    *(
        []
        if torch.cuda.is_available()  # there the 4-bit weights load: the GPU check trains them
        else [
            (
                "4-bit weights without a CUDA GPU",
                {"use_peft": "true", "load_in_4bit": "true"},
                "load_in_4bit needs a CUDA GPU (for bitsandbytes); none is here.",
            )
        ]
    ),
    (
        "4-bit weights to merge into",
        {"load_in_4bit": "true", "use_peft": "true", "merge_adapter": "true"},
        "merge_adapter would merge into rounded 4-bit weights (load_in_4bit).",
    ),
    (
        "a head rate scaled from a zero rate",
        {"learning_rate": 0, "head_learning_rate": 1e-3},
        "head_learning_rate needs learning_rate above 0",
    ),
    (
        "a zero batch size",
        {"per_device_train_batch_size": 0},
        "per_device_train_batch_size must be positive",
    ),
    ("an unknown choice", {"optim": "adam"}, "optim must be one of adamw, adafactor, sgd"),
    ("zero max_steps", {"max_steps": 0}, "max_steps must be positive, or -1"),
    (
        "warmup as long as max_steps",
        {"max_steps": 5, "warmup_steps": 5},
        "warmup_steps must be smaller",
    ),
    ("warmup longer than the epochs", {"warmup_steps": 10_000}, "must be shorter than training"),
    (
        "best model without evaluation",
        {"load_best_model_at_end": "true"},
        "Set eval_strategy for load_best_model_at_end",
    ),
    (
        "best model with mismatched strategies",
        {"load_best_model_at_end": "true", "eval_strategy": "steps", "save_strategy": "epoch"},
        "save_strategy equal to eval_strategy",
    ),
    (
        "a metric without eval_ prefix",
        {"metric_for_best_model": "loss"},
        "must name an eval_ metric",
    ),
    (
        "a metric that evaluation does not produce",
        {"metric_for_best_model": "eval_meteor", "eval_strategy": "epoch"},
        "eval_meteor is not one of",
    ),
    (
        "constant schedule with warmup",
        {"lr_scheduler_type": "constant"},
        "use constant_with_warmup",
    ),
    ("a malformed YAML config", {"config": "{malformed_yaml}"}, "is not valid YAML at line"),
    ("a YAML config that is a list", {"config": "{list_yaml}"}, "must hold a mapping"),
    ("a missing YAML config", {"config": "nowhere.yaml"}, "Cannot read config file nowhere.yaml"),
    ("an unknown key in YAML", {"config": "{typo_yaml}"}, "Unknown option learnin_rate"),
    (
        "a missing data file",
        {"train_file": "nowhere.jsonl"},
        "Data file nowhere.jsonl (train_file) does not exist",
    ),
    (
        "an unsupported data format",
        {"train_file": "{xml_file}"},
        "(train_file) must end in one of .csv, .json, .jsonl",
    ),
    ("a malformed data file", {"train_file": "{broken_jsonl}"}, "line 2, is not JSON: Expecting"),
    ("an empty data file", {"train_file": "{empty_jsonl}"}, "is empty"),
    (
        "a dataset with no rows",
        {"train_file": "{header_only_csv}", "validation_file": "null"},
        "no data",
    ),
    (
        "a model path that is not a directory",
        {"model_name_or_path": "./no-such-model"},
        "is not a local directory",
    ),
    (
        "a model that is neither local nor reachable",
        {"model_name_or_path": "no-org/no-model"},
        "nor reachable",
    ),
    ("resume latest without checkpoints", {"resume_from_checkpoint": "latest"}, "holds none"),
    (
        "resume from a path with no checkpoint",
        {"resume_from_checkpoint": "nowhere"},
        "not a complete checkpoint",
    ),
    (
        "resume from a corrupt checkpoint",
        {"resume_from_checkpoint": "{corrupt_checkpoint}"},
        "is damaged: model.safetensors has 9 bytes, not",
    ),
    (
        "resume from another model's checkpoint",
        {"resume_from_checkpoint": "{foreign_checkpoint}"},
        "is from other",
    ),
    (
        "resume with another batch size",
        {"resume_from_checkpoint": "{good_checkpoint}", "per_device_train_batch_size": 8},
        "accumulation 1; to keep its place in the data, resume on 1 process(es) with "
        "per_device_train_batch_size 4 and gradient_accumulation_steps 1.",
    ),
    (
        "an unwritable output directory",
        {"output_dir": "{file_as_dir}"},
        "is not a writable directory",
    ),
    ("an output dir that holds a run", {"output_dir": "{previous_run}"}, "already holds a run"),
    (
        "a flag from another tool",
        {"fp16": "true"},
        "Unknown option fp16; use --mixed_precision fp16.",
    ),
    ("bf16 as a flag", {"bf16": "true"}, "Unknown option bf16; use --mixed_precision bf16."),
    ("lr for the learning rate", {"lr": 1e-4}, "Unknown option lr; use --learning_rate."),
    ("epochs for the epochs", {"epochs": 3}, "Unknown option epochs; use --num_train_epochs."),
    (
        "batch_size",
        {"batch_size": 8},
        "Unknown option batch_size; use --per_device_train_batch_size.",
    ),
    (
        "a resume that would end before the checkpoint",
        {"resume_from_checkpoint": "{good_checkpoint}", "max_steps": 1, "warmup_steps": 0},
        "is at update 2, past the 1 updates of this run",
    ),
    *TASK_ERROR_ROWS,
]


@pytest.fixture(scope="module")
def material(tmp_path_factory):
    """Files the rows point at: broken configs and data, checkpoints good, corrupt and foreign."""
    root = tmp_path_factory.mktemp("material")
    (root / "malformed.yaml").write_text("learning_rate: 1\nmax_steps: [1\n")
    (root / "list.yaml").write_text("- learning_rate\n")
    (root / "typo.yaml").write_text("learnin_rate: 0.1\n")
    (root / "data.xml").write_text("<text>hello</text>\n")
    (root / "broken.jsonl").write_text('{"text": "fine"}\n{"text": oops\n')
    (root / "header-only.csv").write_text("text,label\n")
    (root / "empty.jsonl").write_text("")
    (root / "file").write_text("not a directory")
    run = root / "previous"
    run_train(run, max_steps=2, save_strategy="steps", save_steps=2)
    corrupt = root / "corrupt"
    shutil.copytree(run / "checkpoints" / "step-2", corrupt)
    (corrupt / "model.safetensors").write_bytes(b"truncated")
    foreign = root / "foreign"
    shutil.copytree(run / "checkpoints" / "step-2", foreign)
    state = json.loads((foreign / "trainer_state.json").read_text())
    (foreign / "trainer_state.json").write_text(json.dumps({**state, "model": "other-model"}))
    values = {
        "malformed_yaml": root / "malformed.yaml",
        "list_yaml": root / "list.yaml",
        "typo_yaml": root / "typo.yaml",
        "xml_file": root / "data.xml",
        "broken_jsonl": root / "broken.jsonl",
        "empty_jsonl": root / "empty.jsonl",
        "header_only_csv": root / "header-only.csv",
        "corrupt_checkpoint": corrupt,
        "foreign_checkpoint": foreign,
        "file_as_dir": root / "file" / "out",
        "previous_run": run,
        "good_checkpoint": run / "checkpoints" / "step-2",
    }
    values.update(task_material(root))
    return {key: str(value) for key, value in values.items()}


def fill(options, material):
    return {
        name: value.format(**material) if isinstance(value, str) else value
        for name, value in options.items()
    }


@pytest.mark.parametrize("what, options, message", ROWS, ids=[row[0] for row in ROWS])
def test_bad_input_gets_one_sentence_and_exit_2(
    what, options, message, material, tmp_path, monkeypatch, capsys
):
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "notes.txt").write_text("keep me")
    options = {"output_dir": existing, "max_steps": -1, **fill(options, material)}
    watched = [existing] + [Path(v) for v in material.values() if Path(v).is_dir()]
    before = [tree_digest(path) for path in watched]
    monkeypatch.chdir(PROJECT)
    # A fresh Accelerate state (a singleton), as a new process has: an earlier row's Accelerator
    # would refuse this row's mixed_precision.
    AcceleratorState._reset_state(reset_partial_state=True)
    with pytest.raises(SystemExit) as exit_info:
        train.main(arguments(options.pop("output_dir"), **options))
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert exit_info.value.code == 2
    assert error.startswith("error: ") and message in error, error
    assert [tree_digest(path) for path in watched] == before, "existing files were touched"


@pytest.mark.loop
def test_cli_prints_one_line_and_no_traceback(tmp_path):
    result = subprocess.run(
        [sys.executable, "train.py", *arguments(tmp_path / "out", learning_rate=-1)],
        cwd=PROJECT,
        env=environment(),
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert result.stderr == "error: Option learning_rate must not be negative, got -1.0.\n"
    assert not (tmp_path / "out").exists()


@pytest.mark.loop
def test_debug_option_shows_the_traceback(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "train.py",
            *arguments(tmp_path / "out", model_name_or_path="no-org/no-model", debug="true"),
        ],
        cwd=PROJECT,
        env=environment(),
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    assert "Traceback" in result.stderr and "nor reachable" in result.stderr
