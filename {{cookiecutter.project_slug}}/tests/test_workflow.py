"""The work around the loop: a run's record reruns it (record.py), its curves and a comparison
of runs are drawn (plots.py), final/ holds a model card (hub.py). The same code for every task:
these run for the first task only."""

import json
import struct
import subprocess
import sys

import pytest
from accelerate import Accelerator
from conftest import FLAT_EVALS_EVERY_2, PROJECT, TINY, environment, losses, run_train

import task
from config import Config
from trainkit import record
from trainkit.checkpoints import checkpoint_dirs
from trainkit.cli import parse_args

pytestmark = pytest.mark.loop


def png_size(path):
    """(width, height) of a PNG, read from its header."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", data[16:24])


@pytest.mark.slow
def test_a_recorded_run_reruns_to_the_same_losses(tmp_path):
    """Two processes under accelerate launch: the record holds the launch, and a rerun from it
    logs the same losses."""
    first, again = tmp_path / "first", tmp_path / "again"
    options = {"max_steps": 6, "per_device_train_batch_size": 2, "save_strategy": "steps"}
    run_train(first, processes=2, save_steps=3, **options)
    recorded = json.loads((first / "record.json").read_text())
    assert recorded["processes"] == 2 and recorded["seed"] == TINY["seed"]
    assert "--num_processes" in recorded["launcher"] and recorded["command"][-1].startswith("--")
    assert recorded["environment"]["ACCELERATE_USE_CPU"] == "true"
    assert recorded["packages"]["torch"] and recorded["python"]
    # Checkpoints carry the record too.
    assert all((path / "record.json").is_file() for path in checkpoint_dirs(first))

    rerun = subprocess.run(
        [sys.executable, "-m", "trainkit.record", str(first), "--rerun", str(again)],
        cwd=PROJECT, env=environment(), capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "accelerate" in rerun.stdout and "--num_processes 2" in rerun.stdout
    assert losses(again) == losses(first)
    assert json.loads((again / "record.json").read_text())["processes"] == 2


def test_the_record_holds_the_commit_the_diff_of_a_dirty_tree_and_the_paths_read(
    tmp_path, monkeypatch
):
    repository = tmp_path / "project"
    repository.mkdir()

    def git(*args):
        subprocess.run(["git", *args], cwd=repository, check=True, capture_output=True)

    git("init", "-q")
    (repository / "train.py").write_text("learning_rate = 1e-3\n")
    git("add", "train.py")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "first")
    (repository / "train.py").write_text("learning_rate = 3e-4\n")
    (repository / "notes.txt").write_text("not committed\n")
    monkeypatch.setattr(record, "PROJECT", repository)
    # A data file outside the project is read, and recorded where it lies.
    elsewhere = tmp_path / "held-out.jsonl"
    elsewhere.write_bytes((PROJECT / TINY["validation_file"]).read_bytes())
    options = {**TINY, "validation_file": elsewhere}
    cfg = parse_args([f"--{k}={v}" for k, v in options.items()], Config)
    out = tmp_path / "run"
    out.mkdir()

    record.write(cfg, Accelerator(cpu=True), out)
    written = json.loads((out / "record.json").read_text())
    assert written["local_paths"]["validation_file"] == str(elsewhere.resolve())
    model = (PROJECT / TINY["config_name"]).resolve()
    assert written["local_paths"]["config_name"] == str(model)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repository, capture_output=True)
    assert written["git"]["commit"] == commit.stdout.decode().strip()
    assert written["git"]["dirty"] and written["git"]["untracked"] == ["notes.txt"]
    assert "+learning_rate = 3e-4" in (out / "record.diff").read_text()
    assert record.differences(written) == [
        "the recorded tree was dirty: record.diff holds its changes"
    ]
    # Committed since: the record names both commits.
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "second")
    assert record.differences(written)[0].startswith("git commit ")
    record.write(cfg, Accelerator(cpu=True), out)
    assert not (out / "record.diff").exists(), "a clean tree leaves no diff behind"


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """Two runs of 8 updates that differ in their learning rate, evaluated every 4; the first
    draws its curves."""
    root = tmp_path_factory.mktemp("runs")
    rate = TINY["learning_rate"]
    a, b = root / f"lr-{rate:g}", root / f"lr-{rate / 2:g}"
    options = {"max_steps": 8, "eval_strategy": "steps", "eval_steps": 4}
    run_train(a, plot_curves="true", **options)
    run_train(b, learning_rate=rate / 2, **options)
    return a, b


def test_a_run_ends_with_its_curves_and_runs_compare(two_runs, tmp_path):
    """curves.png after a run (none with plot_curves=false); compare.png and compare.md over two
    runs that differ in one option. Sizes from the PNG headers: the figure is drawn, three panels
    wide."""
    a, b = two_runs
    assert png_size(a / "curves.png") == (1760, 495)
    assert not (b / "curves.png").exists()

    out = tmp_path / "compare"
    done = subprocess.run(
        [sys.executable, "-m", "trainkit.plots", str(a), str(b), "--out", str(out)],
        cwd=PROJECT, env=environment(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    # --out names a folder (issue 28): both files go into it.
    assert sorted(path.name for path in out.iterdir()) == ["compare.md", "compare.png"]
    assert png_size(out / "compare.png") == (1760, 495)
    table = (out / "compare.md").read_text()
    assert f"| {a.name} | 8 |" in table and f"| {b.name} | 8 |" in table
    rate = TINY["learning_rate"]
    assert f"| learning_rate | {rate} | {rate / 2} |" in table
    differing = table.split("Options that differ:")[1]
    assert "output_dir" not in differing and "max_steps" not in differing
    assert "plot_curves" not in differing, "it changes no number of a run"


def test_final_holds_a_model_card(two_runs):
    a, _ = two_runs
    card = (a / "final" / "README.md").read_text()
    evals = [json.loads(line) for line in (a / "metrics.jsonl").read_text().splitlines()]
    last_loss = [r["eval_loss"] for r in evals if "eval_loss" in r][-1]
    if task.model_class().__module__.startswith("transformers"):
        assert card.startswith("---\nlibrary_name: transformers\n")
    else:  # model.py's own model: no library
        assert card.startswith(f"---\ntags:\n- {task.NAME}\n")
    assert f"A {task.NAME} model, from scratch (config {TINY['config_name']})" in card
    assert TINY["train_file"].split("/")[-1] in card  # the data
    assert "Last evaluation, at update 8 (final/'s model):" in card
    assert f"| eval_loss | {last_loss:.4g} |" in card
    assert f"Best eval_loss: {min(r['eval_loss'] for r in evals if 'eval_loss' in r):.4g}" in card
    assert f'{task.model_class().__name__}.from_pretrained("{a / "final"}")' in card
    assert "- 8 updates; last training loss" in card and "1 process(es) on " in card
    assert f"learning_rate: {TINY['learning_rate']}" in card  # every option


def test_a_model_card_of_the_best_checkpoint_gives_its_scores_first(tmp_path):
    """With load_best_model_at_end, final/ holds the best checkpoint's model, and the card's
    scores are that checkpoint's, the last evaluation's beside them (issue 28)."""
    out = tmp_path / "run"
    run_train(out, max_steps=6, load_best_model_at_end="true", **FLAT_EVALS_EVERY_2)
    card = (out / "final" / "README.md").read_text()
    assert "final/ holds the best checkpoint's model (load_best_model_at_end)" in card
    assert "evaluation at update 2:" in card and "The last evaluation, at update 6:" in card
