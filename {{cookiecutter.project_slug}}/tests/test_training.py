"""The workflow end to end: the debug preset trains, every shipped config runs, checkpoints
resume, and final/ loads with from_pretrained."""

import functools
import json
import subprocess
import sys

import pytest
import torch
import yaml
from conftest import (
    FLAT_EVALS_EVERY_2,
    PROJECT,
    TINY,
    arguments,
    assert_close_values,
    environment,
    eval_records,
    final_weights,
    free_port,
    losses,
    records,
    run_config,
    run_train,
)

import task
from task import NAME, model_class


def test_debug_preset_trains_and_the_loss_goes_down(tmp_path):
    out = tmp_path / "debug"
    run_config("configs/debug.yaml", out)
    by_step = losses(out)
    steps = sorted(by_step)
    assert steps[-1] == yaml.safe_load((PROJECT / "configs/debug.yaml").read_text())["max_steps"]
    assert by_step[steps[-1]] < 0.9 * by_step[steps[0]], by_step
    assert eval_records(out), "the debug preset evaluates"
    assert (out / "final" / "model.safetensors").is_file()
    assert yaml.safe_load((out / "config.yaml").read_text())["output_dir"] == str(out)


def is_search_space(path):
    """tune.py's search spaces (configs/search.yaml, or one of yours) give an option ranges or
    choices, a mapping, where a run's config gives values."""
    values = yaml.safe_load(path.read_text()) or {}
    return any(isinstance(value, dict) for value in values.values())


# debug.yaml runs in full above; search spaces are tune.py's, not a run's config.
SHIPPED = sorted(
    path.name
    for path in (PROJECT / "configs").glob("*.yaml")
    if path.name != "debug.yaml" and not is_search_space(path)
)


@pytest.mark.parametrize("config", SHIPPED)
def test_every_shipped_config_runs_a_step(tmp_path, config):
    out = tmp_path / "run"
    options = {
        "max_steps": 2,
        "warmup_steps": 0,
        "warmup_ratio": 0,
        "max_train_samples": 16,
        "max_eval_samples": 8,
    }
    run_config(f"configs/{config}", out, **options)
    assert max(r["step"] for r in records(out) if "loss" in r) == 2


def test_final_model_reloads_and_scores_like_the_last_eval(tmp_path, monkeypatch):
    """final/ is predict-ready: loaded with the task's model_class() alone, it scores the
    validation data exactly as the run's last evaluation did."""
    from accelerate import Accelerator
    from torch.utils.data import DataLoader

    import task
    from train import Config, evaluate
    from trainkit import cli, data

    out = tmp_path / "run"
    run_train(out, max_steps=3, eval_strategy="steps", eval_steps=3)
    monkeypatch.chdir(PROJECT)
    final = out / "final"
    cfg = cli.parse_args(arguments(out, model_name_or_path=final, config_name="null"), Config)
    tokenizer, _ = task.load_tokenizer_and_config(cfg)
    _, eval_set, label_names = data.load_datasets(cfg, Accelerator(cpu=True), tokenizer, task)
    collate = functools.partial(task.collate, cfg, tokenizer=tokenizer, epoch=None)
    loader = DataLoader(eval_set, batch_size=cfg.per_device_eval_batch_size, collate_fn=collate)
    model = model_class().from_pretrained(final)
    scores = evaluate(Accelerator(cpu=True), model, loader, cfg, label_names, tokenizer)
    last = {name: value for name, value in eval_records(out)[-1].items() if name in scores}
    assert_close_values(scores, last, 1e-6, "final/ against the last eval")


@pytest.mark.loop
def test_checkpoint_holds_the_full_training_state(tmp_path):
    out = tmp_path / "run"
    run_train(
        out, max_steps=4, save_strategy="steps", save_steps=2, eval_strategy="steps", eval_steps=2
    )
    checkpoint = out / "checkpoints" / "step-4"
    names = {path.name for path in checkpoint.iterdir()}
    assert {
        "model.safetensors",
        "optimizer.bin",
        "random_states_0.pkl",
        "trainer_state.json",
        "config.yaml",
    } <= names
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    assert state["global_step"] == 4 and state["task"] == NAME
    assert state["best_metric"] == min(r["eval_loss"] for r in eval_records(out))


@pytest.mark.loop
def test_resume_continues_where_the_checkpoint_left_off(tmp_path):
    out = tmp_path / "run"
    run_train(out, max_steps=4, save_strategy="steps", save_steps=2)
    result = run_train(
        out, max_steps=6, save_strategy="steps", save_steps=2, resume_from_checkpoint="latest"
    )
    assert "Resumed from" in result.stdout + result.stderr
    assert sorted(losses(out)) == [1, 2, 3, 4, 5, 6]


@pytest.mark.loop
def test_validation_split_is_carved_out_when_missing(tmp_path):
    out = tmp_path / "run"
    run_train(
        out,
        max_steps=2,
        validation_file="null",
        max_train_samples=200,
        eval_strategy="steps",
        eval_steps=2,
    )
    assert eval_records(out)


@pytest.mark.loop
def test_early_stopping_and_best_model_at_end(tmp_path):
    out = tmp_path / "run"
    options = {
        "early_stopping_patience": 2,
        "load_best_model_at_end": "true",
        "save_total_limit": 1,
    }
    result = run_train(out, max_steps=40, **options, **FLAT_EVALS_EVERY_2)
    assert [r["step"] for r in eval_records(out)] == [2, 4, 6]
    assert "Loaded the best model" in result.stdout
    kept = sorted(path.name for path in (out / "checkpoints").iterdir())
    assert kept == ["step-2", "step-6"], "rotation keeps the best (step-2) and the newest"


@pytest.mark.loop
def test_help_lists_every_option():
    result = subprocess.run(
        [sys.executable, "train.py", "--help"], cwd=PROJECT, capture_output=True, text=True
    )
    assert result.returncode == 0
    for name in (
        "learning_rate",
        "gradient_accumulation_steps",
        "resume_from_checkpoint",
        "save_total_limit",
    ):
        assert f"--{name}" in result.stdout


@pytest.mark.loop
@pytest.mark.parametrize(
    "options",
    [
        {"mixed_precision": "bf16"},
        pytest.param(
            {"gradient_checkpointing": "true"},
            marks=pytest.mark.skipif(
                not hasattr(task.model_class(), "gradient_checkpointing_enable"),
                reason="model.py's module has no gradient checkpointing (transformers models do)",
            ),
        ),
        {"optim": "adafactor"},
        {"optim": "sgd", "learning_rate": 0.1},
        {"dataloader_num_workers": 2},
        {"lr_scheduler_type": "cosine", "warmup_ratio": 0.2, "warmup_steps": 0},
    ],
    ids=lambda options: ",".join(f"{k}={v}" for k, v in options.items()),
)
def test_training_options_train(tmp_path, options):
    out = tmp_path / "run"
    run_train(out, max_steps=4, **options)
    by_step = losses(out)
    assert sorted(by_step) == [1, 2, 3, 4]
    assert all(loss == loss and loss < 100 for loss in by_step.values())


# torch.compile wraps whatever model the task builds: the loop's option, checked once.
@pytest.mark.loop
@pytest.mark.slow
def test_torch_compile_trains(tmp_path):
    out = tmp_path / "run"
    # A process of its own: inductor leaves compile workers and caches in the process it runs in.
    run_train(out, max_steps=3, torch_compile="true", in_process=False)
    assert sorted(losses(out)) == [1, 2, 3]
    assert model_class().from_pretrained(out / "final") is not None


@pytest.mark.loop
@pytest.mark.parametrize(
    "launch_config", sorted(p.name for p in (PROJECT / "configs" / "accelerate").glob("*.yaml"))
)
def test_every_accelerate_config_loads(launch_config):
    from accelerate.commands.config.config_args import load_config_from_file

    config = load_config_from_file(str(PROJECT / "configs" / "accelerate" / launch_config))
    assert config.num_processes >= 1 and config.distributed_type


@pytest.mark.loop
@pytest.mark.slow
def test_cpu_launch_config_runs_two_processes(tmp_path):
    out = tmp_path / "run"
    launch = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        "configs/accelerate/cpu_2proc.yaml",
    ]
    launch += ["--main_process_port", str(free_port())]
    command = launch + ["train.py", *arguments(out, max_steps=2, save_strategy="steps")]
    result = subprocess.run(command, cwd=PROJECT, env=environment(), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(losses(out)) == [1, 2]
    assert (out / "checkpoints" / "step-2" / "random_states_1.pkl").exists(), (
        "a second process took part"
    )
    # The launch config sets everything: the launcher notes no default it had to pick.
    assert "was set to a value" not in result.stdout + result.stderr


@pytest.mark.loop
def test_weight_decay_skips_biases_and_norm_weights(tmp_path):
    """After one update from the same start, runs with and without weight decay differ only in
    the matrices: biases and norm weights (the 1-D parameters) are never decayed."""
    plain, decayed = tmp_path / "plain", tmp_path / "decayed"
    run_train(plain, max_steps=1, warmup_steps=0, weight_decay=0.0)
    run_train(decayed, max_steps=1, warmup_steps=0, weight_decay=0.5)
    a, b = final_weights(plain), final_weights(decayed)
    assert all(torch.equal(a[name], b[name]) for name in a if a[name].ndim < 2)
    assert all(not torch.equal(a[name], b[name]) for name in a if a[name].ndim >= 2)


@pytest.mark.loop
def test_logged_grad_norm_is_before_clipping(tmp_path):
    out = tmp_path / "run"
    run_train(out, max_steps=3, max_grad_norm=1e-3)
    assert all(r["grad_norm"] > 1e-2 for r in records(out) if "grad_norm" in r)


def test_fine_tune_from_pretrained_weights(tmp_path):
    """model_name_or_path loads weights (here: a model this project trained): with learning rate 0
    the fine-tuned model comes out exactly as it went in."""
    first, second = tmp_path / "first", tmp_path / "second"
    run_train(first, max_steps=3)
    options = {"learning_rate": 0.0, "warmup_steps": 0, "config_name": "null"}
    run_train(second, max_steps=1, model_name_or_path=first / "final", **options)
    a, b = final_weights(first), final_weights(second)
    assert a.keys() == b.keys() and all(torch.equal(a[name], b[name]) for name in a)


@pytest.mark.loop
def test_adamw_is_fused_where_pytorch_has_the_kernel(tmp_path):
    """The fused AdamW (one kernel for every parameter) on CPU and GPUs; elsewhere PyTorch's
    default. Fused or not, it is AdamW: one update from the same start lands on the same weights."""
    from config import Config
    from trainkit.optim import build_optimizer

    cfg = Config()
    model = torch.nn.Linear(4, 2)
    assert build_optimizer(cfg, model, torch.device("cpu")).defaults["fused"] is True
    assert build_optimizer(cfg, model, torch.device("meta")).defaults["fused"] is None
    weights = []
    for device in ("cpu", "meta"):
        torch.manual_seed(0)
        model = torch.nn.Linear(4, 2)
        optimizer = build_optimizer(cfg, model, torch.device(device))
        model(torch.randn(3, 4)).square().sum().backward()
        optimizer.step()
        weights.append(model.weight.detach().clone())
    torch.testing.assert_close(weights[0], weights[1])


@pytest.mark.skipif(
    task.NAME in ("custom", "image-classification"),
    reason="the task's inputs are rows or images of one size: no lengths to sort by",
)
def test_evaluation_goes_longest_first_and_keeps_every_sample(monkeypatch):
    from accelerate import Accelerator

    import task
    from config import Config
    from trainkit import cli, data

    monkeypatch.chdir(PROJECT)
    cfg = cli.parse_args(arguments("unused"), Config)
    tokenizer, _ = task.load_tokenizer_and_config(cfg)
    _, eval_set, _ = data.load_datasets(cfg, Accelerator(cpu=True), tokenizer, task)
    raw = data.load_raw_datasets(cfg, task.data_columns(cfg), task.FILE_READERS)
    _, unsorted, _ = task.prepare_datasets(cfg, raw, tokenizer)
    lengths = data.token_counts(eval_set)
    assert lengths and lengths == sorted(lengths, reverse=True)
    assert sorted(map(str, eval_set)) == sorted(map(str, unsorted))


@pytest.mark.loop
def test_an_update_makes_no_importlib_lookups(monkeypatch):
    """accelerate's optimizer.step() looks for the lomo_optim package on every update unless
    optim.py's cached answer stands in: steady updates then ask importlib nothing."""
    import importlib.util

    from accelerate import Accelerator

    from config import Config
    from trainkit.optim import build_optimizer

    model = torch.nn.Linear(4, 2)
    optimizer = build_optimizer(Config(), model, torch.device("cpu"))
    model, optimizer = Accelerator(cpu=True).prepare(model, optimizer)
    lookups, find_spec = [], importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda *a, **k: lookups.append(a) or find_spec(*a, **k)
    )
    for _ in range(3):
        model(torch.randn(3, 4)).sum().backward()
        optimizer.step()
        optimizer.zero_grad()
    assert len(lookups) <= 1, f"importlib asked {lookups} during 3 updates"


@pytest.mark.loop
def test_freed_cpu_memory_is_kept_for_the_next_update():
    """After the first update, later updates reuse the freed pages instead of taking new ones
    from the kernel (page faults are what the setting saves), at about the same peak memory.
    Compared with the same updates without the setting, in a process of their own each."""
    code = (
        "import resource, sys, torch\n"
        "from trainkit.processes import keep_freed_cpu_memory\n"
        "if sys.argv[1] == 'keep':\n"
        "    keep_freed_cpu_memory(torch.device('cpu'))\n"
        "layers = [torch.nn.Linear(1024, 4096), torch.nn.GELU(), torch.nn.Linear(4096, 1024)]\n"
        "model = torch.nn.Sequential(*layers)\n"
        "optimizer = torch.optim.AdamW(model.parameters())\n"
        "faults = []\n"
        "for _ in range(20):\n"
        "    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
        "    model(torch.randn(512, 1024)).square().mean().backward()\n"
        "    optimizer.step()\n"
        "    optimizer.zero_grad()\n"
        "    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)\n"
        "print(sum(faults[1:]), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
    )
    runs = {}
    for setting in ("keep", "default"):
        done = subprocess.run(
            [sys.executable, "-c", code, setting],
            cwd=PROJECT,
            env=environment(),
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stderr
        runs[setting] = [int(word) for word in done.stdout.split()]
    (kept_faults, kept_peak), (default_faults, default_peak) = runs["keep"], runs["default"]
    # Measured over 19 updates: 4k-14k faults with the setting, 57k-300k without; peaks within 10%.
    assert kept_faults * 3 < default_faults, runs
    assert kept_peak < 1.25 * default_peak, runs


@pytest.mark.loop
@pytest.mark.parametrize(
    "rows, held_out", [(178, 44), (400, 50), (2000, 100), (40, 10), (3, 1)], ids=str
)
def test_a_carved_validation_split_keeps_enough_rows_to_score(rows, held_out):
    """5% of a 178-row table is 9 rows: accuracy in steps of 11%. A carved split keeps at least
    50 rows where a quarter of the data allows (issue 28), 5% of larger data."""
    from trainkit.data import validation_size

    assert validation_size(rows, 5) == held_out


@pytest.mark.skipif(
    "label_column_name" not in task.Options.__dataclass_fields__, reason="the task has no labels"
)
def test_a_classifier_is_scored_class_by_class(tmp_path):
    """Each evaluation writes eval_report.md: precision, recall, F1 and support per label (per
    entity type for tags) and, for labels, a confusion matrix whose cells count every
    validation example once (issue 28)."""
    out = tmp_path / "run"
    done = run_train(out, max_steps=4, eval_strategy="steps", eval_steps=4)
    assert f"by class, the last eval: {out}/eval_report.md" in done.stdout
    report = (out / "eval_report.md").read_text()
    per_class, _, matrix = report.partition("Confusion matrix")

    def cells(table):
        return [line.strip("| ").split(" | ") for line in table.splitlines() if line[:2] == "| "]

    header, *rows = cells(per_class)
    assert header[:2] in (["label", "precision"], ["entity type", "precision"]), header
    if matrix:  # labels: every validation example in one cell, its label's support in its row
        _, *matrix_rows = cells(matrix)
        counts = [sum(map(int, row[1:])) for row in matrix_rows]
        assert sum(counts) == TINY["max_eval_samples"]
        assert counts == [int(row[-1]) for row in rows]


@pytest.mark.loop
def test_every_file_of_final_is_as_readable_as_a_new_file(tmp_path):
    """safetensors writes the weights with mode 0600; final/ is for sharing (issue 28's
    journey): every file of it gets the mode the umask gives a new file."""
    import os
    import stat

    run_train(tmp_path / "run", max_steps=2)
    umask = os.umask(0)
    os.umask(umask)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "run" / "final").iterdir()}
    assert modes["model.safetensors"] == 0o666 & ~umask, modes
    assert len(set(modes.values())) == 1, modes
