"""Runs survive kills, preemption and rotation without losing work (README, "Reliability")."""

import json
import os
import pickle
import random
import shutil
import socket
import subprocess
import time

import pytest
from conftest import (
    FLAT_EVALS_EVERY_2,
    PROJECT,
    arguments,
    final_weights,
    kill_group,
    losses,
    run_train,
    start_train,
    train_records,
    tree_digest,
    wait_for_step,
)

# Checkpoints, signals and rotation belong to the loop, the same for every task.
pytestmark = pytest.mark.loop

LONG = {
    "num_train_epochs": 6,
    "save_strategy": "steps",
    "save_steps": 1,
    "per_device_train_batch_size": 2,
}


@pytest.mark.slow
def test_kill_anywhere_always_resumes_exactly(tmp_path, slow_to_save_model):
    """SIGKILL at 20 random moments (a checkpoint is written after every update, so many kills
    land inside a save); every restart resumes from `latest`, and the finished run's losses and
    weights are those of an uninterrupted run."""
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    options = {**LONG, "config_name": slow_to_save_model, "num_train_epochs": 3}
    run_train(reference, **options)
    total = max(losses(reference))
    rng, kills, inside_save = random.Random(0), 0, 0
    while kills < 20:
        resume = {"resume_from_checkpoint": "latest"} if (killed / "checkpoints").exists() else {}
        done = max(losses(killed), default=0)
        process = start_train(killed, **options, **resume)
        if not wait_for_step(process, killed, min(total, done + rng.randint(1, 3))):
            break  # the run finished before this kill
        time.sleep(rng.uniform(0, 0.15))
        kill_group(process)
        kills += 1
        inside_save += any((killed / "checkpoints").glob(".tmp-*"))
    assert kills >= 20, f"only {kills} kills before the run finished"
    assert inside_save >= 2, f"only {inside_save} kills landed inside a checkpoint write"
    print(f"\n{kills} kills, {inside_save} inside a checkpoint write")
    run_train(killed, **options, resume_from_checkpoint="latest")
    assert losses(killed) == losses(reference)
    assert (killed / "final" / "model.safetensors").read_bytes() == (
        reference / "final" / "model.safetensors"
    ).read_bytes()


def test_rotation_keeps_best_and_newest_and_nothing_outside(tmp_path):
    out = tmp_path / "run"
    (out / "checkpoints").mkdir(parents=True)
    (out / "notes.txt").write_text("mine")
    (out / "checkpoints" / "README").write_text("also mine")
    run_train(out, max_steps=10, save_total_limit=2, **FLAT_EVALS_EVERY_2)
    kept = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert kept == ["README", "step-10", "step-2"]
    assert (out / "notes.txt").read_text() == "mine"


def test_new_run_refuses_an_output_dir_that_holds_a_run(tmp_path):
    out = tmp_path / "run"
    run_train(out, max_steps=2, save_strategy="steps", save_steps=1)
    before = tree_digest(out)
    result = run_train(out, check=False, max_steps=2)
    assert result.returncode == 2
    assert "resume_from_checkpoint" in result.stderr and "overwrite_output_dir" in result.stderr
    assert tree_digest(out) == before, "nothing was touched"
    run_train(out, max_steps=3, overwrite_output_dir="true")
    assert sorted(losses(out)) == [1, 2, 3]
    assert not (out / "checkpoints").exists()


def test_metrics_records_are_one_json_object_per_line(tmp_path):
    out = tmp_path / "run"
    run_train(out, max_steps=3, eval_strategy="steps", eval_steps=3, peak_tflops=0.01)
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert all(isinstance(json.loads(line), dict) for line in lines)
    record = train_records(out)[0]
    expected = {
        "step",
        "epoch",
        "loss",
        "learning_rate",
        "grad_norm",
        "tokens_per_second",
        "samples_per_second",
    }
    assert expected <= record.keys()
    assert 0 < record["mfu"] < 1000, "model FLOPs utilisation is logged when peak_tflops is set"


def test_a_second_run_into_a_busy_output_dir_refuses_and_a_killed_runs_lock_is_taken_over(
    tmp_path, monkeypatch, capsys
):
    """Two runs launched into one output_dir (a job submitted twice): the second refuses at once,
    naming the first's host and process. A SIGKILLed run leaves its lock behind; the next run
    takes it over, and a finished run leaves none."""
    import train

    out = tmp_path / "run"
    first = start_train(out, max_steps=1000, save_strategy="steps", save_steps=4)
    assert wait_for_step(first, out, 1)
    monkeypatch.chdir(PROJECT)
    with pytest.raises(SystemExit) as second:
        train.main(arguments(out, resume_from_checkpoint="latest", max_steps=1000))
    error = capsys.readouterr().err
    assert first.poll() is None, "the first run was still running"
    assert second.value.code == 2
    assert f"in use by another run: process {first.pid} on {socket.gethostname()}" in error
    kill_group(first)
    assert (out / "run.lock").exists(), "a killed run cannot remove its lock"
    run_train(out, max_steps=4, overwrite_output_dir="true")
    assert max(losses(out)) == 4
    assert not (out / "run.lock").exists()


class Payload:
    """A pickle that runs code when loaded: it creates `marker`."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_checkpoint_file_that_would_run_code_is_refused_and_nothing_runs(
    tmp_path, monkeypatch, capsys
):
    """Resume reads every state with torch.load(weights_only=True): a pickle planted as the
    random state or the optimizer state (its size put into the manifest too, as an attacker
    would) is refused with a sentence, and its code never runs. The same pickle, loaded the
    unsafe way, does run: the test can fail."""
    import train

    marker = tmp_path / "ran"
    payload = pickle.dumps(Payload(marker))
    pickle.loads(payload)
    assert marker.exists(), "the payload runs when unpickled"
    marker.unlink()
    clean = tmp_path / "clean"
    run_train(clean, max_steps=2, save_strategy="steps", save_steps=2)
    monkeypatch.chdir(PROJECT)
    for planted in ("random_states_0.pkl", "optimizer.bin"):
        out = tmp_path / planted
        shutil.copytree(clean, out)
        checkpoint = out / "checkpoints" / "step-2"
        (checkpoint / planted).write_bytes(payload)
        manifest = json.loads((checkpoint / "manifest.json").read_text())
        (checkpoint / "manifest.json").write_text(json.dumps({**manifest, planted: len(payload)}))
        with pytest.raises(SystemExit) as resumed:
            train.main(arguments(out, max_steps=4, resume_from_checkpoint="latest"))
        assert resumed.value.code == 2, planted
        assert "holds code to run, not only data; nothing of it ran" in capsys.readouterr().err
        assert not marker.exists(), planted


@pytest.fixture
def small_disk(tmp_path):
    """A 64 MiB tmpfs: a disk that really fills up. Mounting needs root (the tests run as root
    in CI); elsewhere the test is skipped with the reason."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mount = ["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(disk)]
    mounted = subprocess.run(mount, capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"a size-limited tmpfs cannot be mounted here: {mounted.stderr.strip()}")
    yield disk
    subprocess.run(["umount", "--lazy", str(disk)], check=True)


def leave_free(disk, room):
    """Fill `disk` with a file until `room` bytes are left; returns the file, to free them."""
    filler = disk / "filler"
    filler.unlink(missing_ok=True)
    filler.write_bytes(bytes(shutil.disk_usage(disk).free - room))
    return filler


def size_of(directory):
    return sum(path.stat().st_size for path in directory.rglob("*") if path.is_file())


def test_a_full_disk_stops_the_run_with_its_last_checkpoint_and_the_resume_finishes(
    tmp_path, small_disk
):
    """The disk fills up, for real. The first checkpoint does not fit: its half-written save is
    removed and the run stops, saying there is no checkpoint yet. A later checkpoint that
    cannot fit (measured against the last one) stops the run before it is written, naming the
    last complete checkpoint; when final/ fills the disk, the half-written final/ is removed
    and the run stops the same way. Each time `latest` stays complete, and once space
    is freed the resume finishes with the uninterrupted run's losses and weights."""
    reference, out = tmp_path / "reference", small_disk / "run"
    options = {"max_steps": 6, "save_strategy": "steps", "save_steps": 3}
    run_train(reference, **options)
    checkpoint = size_of(reference / "checkpoints" / "step-3")
    final = size_of(reference / "final")

    filler = leave_free(small_disk, checkpoint // 2)  # not even one checkpoint fits
    stopped = run_train(out, check=False, **options)
    assert stopped.returncode == 2
    assert "No space left on device" in stopped.stderr and "checkpoint is none." in stopped.stderr
    assert not list((out / "checkpoints").iterdir()), "the half-written save is gone"

    filler.unlink()
    filler = leave_free(small_disk, checkpoint * 3 // 2)  # one checkpoint fits, not two
    stopped = run_train(out, check=False, overwrite_output_dir="true", **options)
    assert stopped.returncode == 2
    assert "No space left for checkpoint step-6" in stopped.stderr
    assert "the last complete checkpoint is" in stopped.stderr and "step-3." in stopped.stderr
    assert sorted(path.name for path in (out / "checkpoints").iterdir()) == ["step-3"]

    filler.unlink()
    filler = leave_free(small_disk, checkpoint + final // 2)  # step-6 fits, final/ not
    stopped = run_train(out, check=False, resume_from_checkpoint="latest", **options)
    assert stopped.returncode == 2
    assert "No space left on device" in stopped.stderr and "step-6." in stopped.stderr
    assert not (out / "final").exists() and not (out / ".tmp-final").exists()

    filler.unlink()
    run_train(out, resume_from_checkpoint="latest", **options)
    assert losses(out) == losses(reference)
    weights, resumed = final_weights(reference), final_weights(out)
    assert all(weights[name].equal(resumed[name]) for name in weights)
