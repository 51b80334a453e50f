"""Runs survive kills, preemption and rotation without losing work (docs/reliability.md)."""

import contextlib
import itertools
import json
import os
import pickle
import random
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
from conftest import (
    FLAT_EVALS_EVERY_2,
    PROJECT,
    TINY,
    arguments,
    environment,
    eval_records,
    final_weights,
    kill_group,
    losses,
    run_train,
    start_train,
    train_records,
    tree_digest,
    wait_for_step,
    wait_until,
)

from trainkit.checkpoints import check_intact, checkpoint_dirs, step_of

# Checkpoints, signals and rotation belong to the loop, the same for every task.
pytestmark = pytest.mark.loop

LONG = {
    "num_train_epochs": 6,
    "save_strategy": "steps",
    "save_steps": 1,
    "per_device_train_batch_size": 2,
}


def open_paths(pid):
    """The files a process has open or mapped (Linux /proc): what it is reading or writing."""
    paths = set()
    try:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):  # closed meanwhile
                paths.add(os.readlink(fd))
        maps = Path(f"/proc/{pid}/maps").read_text().splitlines()
    except OSError:  # the process ended
        return paths
    return paths | {line.split(maxsplit=5)[-1] for line in maps if line.count(" ") >= 5}


def kill_when(process, moment, delay=0.0):
    """SIGKILL the run's processes `delay` seconds after `moment()` is first true; False if the
    run ended before."""
    if not wait_until(process, moment, poll=0.003):
        return False
    time.sleep(delay)
    kill_group(process)
    return True


def newer_than(paths, moment):
    """Whether one of `paths` changed after `moment` (a time.time())."""
    return any(path.stat().st_mtime >= moment for path in paths if path.exists())


# Where the wider kill test aims, in turn, and how many kills must land in each place.
AIMS = ["an update", "load_state, resuming", "an evaluation", "the first update after a resume"]
KILLS = {
    "an update": 4,
    "a checkpoint save": 4,
    "an evaluation": 5,
    "load_state, resuming": 5,
    "the first update after a resume": 5,
    "the final save": 3,
}


def kill_moment(aim, process, output_dir, started, checkpoint, step):
    """When a kill aimed at `aim` is due: a test of what the run has written or opened."""
    if aim == "load_state, resuming":  # reading the weights or states of the checkpoint
        opened = lambda: open_paths(process.pid)  # noqa: E731
        return lambda: any(p.startswith(checkpoint) and not p.endswith(".json") for p in opened())
    if aim == "the first update after a resume":  # start_run wrote config.yaml: loading is over
        return lambda: newer_than([output_dir / "config.yaml"], started)
    if aim == "the final save":
        return lambda: (output_dir / ".tmp-final").exists()
    # The log record of update `step`: its evaluation or save follows.
    return lambda: step in losses(output_dir)


def where_it_landed(aim, output_dir, started, done, next_eval):
    """Where a kill aimed at `aim` landed, from what the killed run left on disk."""
    if (output_dir / ".tmp-final").exists():
        return "the final save"
    if newer_than(list(output_dir.glob("checkpoints/.tmp-*")), started):
        return "a checkpoint save"
    logged = losses(output_dir)
    if aim == "an evaluation":
        evaluated = {record["step"] for record in eval_records(output_dir)}
        return aim if max(logged) == next_eval not in evaluated else "an update"
    if aim == "the first update after a resume":
        return aim if max(logged, default=0) <= done else "an update"
    return aim


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="finds kill points in /proc")
def test_kill_anywhere_always_resumes_exactly(tmp_path, slow_to_save_model):
    """SIGKILL at 26 moments of one run: in updates, checkpoint saves (one after every update),
    evaluations, load_state reading the checkpoint a restart resumes from, the first update
    after a resume, and the final save. After each kill the newest checkpoint is complete and
    final/ complete or absent; each restart resumes from `latest`, and the finished run's
    losses, evaluations and weights are those of an uninterrupted run, bit for bit."""
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    options = {
        **LONG,
        "config_name": slow_to_save_model,
        "num_train_epochs": 2,
        "eval_strategy": "steps",
        "eval_steps": 4,
    }
    run_train(reference, **options, in_process=False)
    total = max(losses(reference))
    final_files = sorted(path.name for path in (reference / "final").iterdir())
    rng, turns, attempts = random.Random(0), itertools.cycle(AIMS), 0
    landed = dict.fromkeys(KILLS, 0)

    def wanted(*places):
        return any(landed[place] < KILLS[place] for place in places)

    while wanted(*KILLS) and attempts < 60:
        attempts += 1
        saved = checkpoint_dirs(killed)
        done = step_of(saved[-1]) if saved else 0
        next_eval = done + 4 - done % 4
        possible = {
            "an update": done + 3 < total and wanted("an update", "a checkpoint save"),
            "load_state, resuming": saved and wanted("load_state, resuming"),
            "an evaluation": next_eval < total and wanted("an evaluation"),
            "the first update after a resume": (
                saved and done < total and wanted("the first update after a resume")
            ),
        }
        aim = next((aim for aim in itertools.islice(turns, len(AIMS)) if possible[aim]), None)
        aim = aim or "the final save"  # once the others are met, or the run is near its end
        step = next_eval if aim == "an evaluation" else done + rng.randint(1, 3)
        started = time.time()
        resume = {"resume_from_checkpoint": "latest"} if saved else {}
        process = start_train(killed, **options, **resume)
        moment = kill_moment(aim, process, killed, started, str(saved[-1]) if saved else "", step)
        # Updates: a moment after the log record, inside the update's evaluation or save.
        delay = {"an update": 0.15, "the first update after a resume": 0.05}.get(aim, 0)
        assert kill_when(process, moment, rng.uniform(0, delay)), f"the run ended before {aim}"
        landed[where_it_landed(aim, killed, started, done, next_eval)] += 1
        newest = checkpoint_dirs(killed)
        if newest:
            check_intact(newest[-1])  # raises where a file of it is missing or cut short
        final = killed / "final"
        assert not final.exists() or sorted(p.name for p in final.iterdir()) == final_files
    print(f"\n{sum(landed.values())} kills in {attempts} attempts: {landed}")
    assert all(landed[where] >= least for where, least in KILLS.items()), landed
    run_train(killed, **options, resume_from_checkpoint="latest", in_process=False)
    assert losses(killed) == losses(reference)
    assert eval_records(killed) == eval_records(reference)
    assert (killed / "final" / "model.safetensors").read_bytes() == (
        reference / "final" / "model.safetensors"
    ).read_bytes()


def cache_writes(cache, since):
    """What datasets has been writing in its cache since `since` (a time.time()) and not yet
    renamed: a table under <name>.incomplete/ (load_dataset), tokens in tmp* (map)."""
    names = [p for p in cache.rglob("*") if p.name.startswith("tmp") or ".incomplete" in p.name]
    return [path for path in names if newer_than([path], since)]


@pytest.mark.slow
def test_a_kill_while_tokenizing_leaves_no_cache_a_run_would_read(tmp_path):
    """SIGKILL while datasets writes the train file into its cache and its tokens into
    another: five kills, each landing while a cache file is written. The next run rebuilds
    what was cut short and trains exactly as a run with a cache of its own."""
    train_file = tmp_path / "train.jsonl"
    train_file.write_text((PROJECT / TINY["train_file"]).read_text() * 20)  # seconds of work
    options = {"train_file": train_file, "max_train_samples": "null", "max_steps": 2}
    cache, rng, landed = tmp_path / "cache", random.Random(0), []
    killed, env = tmp_path / "killed", environment(HF_DATASETS_CACHE=str(cache))
    for _ in range(10):
        started = time.time()
        process = start_train(killed, env=env, **options)
        writing = lambda: cache_writes(cache, started)  # noqa: B023, E731
        assert kill_when(process, writing, rng.uniform(0, 0.3)), "the run ended first"
        if left := writing():  # unfinished: the kill came before its rename
            kinds = {"tokens" if path.name.startswith("tmp") else "table" for path in left}
            landed.append(" and ".join(sorted(kinds)))
        else:  # it landed after the writes: a fresh cache, so that the next run writes again
            shutil.rmtree(cache)
        if len(landed) >= 5:
            break
    assert len(landed) >= 5, f"{len(landed)} of 10 kills landed inside a cache write"
    print(f"\nkills inside cache writes: {landed}")
    run_train(killed, env=env, **options)
    reference = tmp_path / "reference"
    run_train(reference, env=environment(HF_DATASETS_CACHE=str(tmp_path / "own")), **options)
    assert losses(killed) == losses(reference)
    weights, rebuilt = final_weights(reference), final_weights(killed)
    assert all(weights[name].equal(rebuilt[name]) for name in weights)


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
    """The space `directory`'s files take on disk: whole blocks (pages on tmpfs) each."""
    return sum(path.stat().st_blocks * 512 for path in directory.rglob("*") if path.is_file())


@pytest.mark.slow
def test_a_full_disk_stops_the_run_with_its_last_checkpoint_and_the_resume_finishes(
    tmp_path, small_disk
):
    """The disk fills up, for real, at each place a run writes. The first checkpoint does not
    fit: its half-written save is removed and the run stops, saying there is no checkpoint yet.
    The disk fills mid-run (another job took the space): the next metrics record cannot be
    written, and the run stops naming its last complete checkpoint. A later checkpoint that
    cannot fit (measured against the last one) stops the run before it is written; when final/
    fills the disk, the half-written final/ is removed. Each time `latest` stays complete, and
    once space is freed the resume finishes with the uninterrupted run's losses and weights. A
    datasets cache on a full disk stops the run before it trains, naming the cache."""
    reference, out = tmp_path / "reference", small_disk / "run"
    options = {"max_steps": 6, "save_strategy": "steps", "save_steps": 3}
    run_train(reference, **options, in_process=False)
    checkpoint = size_of(reference / "checkpoints" / "step-3")
    final = size_of(reference / "final")

    filler = leave_free(small_disk, checkpoint // 2)  # not even one checkpoint fits
    stopped = run_train(out, check=False, **options, in_process=False)
    assert stopped.returncode == 2
    assert "No space left on device" in stopped.stderr and "checkpoint is none." in stopped.stderr
    assert not list((out / "checkpoints").iterdir()), "the half-written save is gone"

    filler.unlink()
    running = start_train(out, overwrite_output_dir="true", **options)
    saved = lambda: (out / "checkpoints" / "step-3").is_dir()  # noqa: E731 (complete, by a rename)
    wait_until(running, saved, poll=0.003)
    os.killpg(running.pid, signal.SIGSTOP)  # held still while the disk fills
    filler = leave_free(small_disk, 0)
    # The rest of the file's last page, in blank lines (every reader skips them): the next
    # record needs a page of its own, as on a disk that filled at a page boundary.
    with (out / "metrics.jsonl").open("a") as metrics:
        metrics.write("\n" * (-metrics.tell() % 4096))
    os.killpg(running.pid, signal.SIGCONT)
    stderr = running.communicate(timeout=120)[1]
    assert running.returncode == 2
    assert "No space left on device" in stderr and "checkpoint is" in stderr, stderr
    assert f"{checkpoint_dirs(out)[-1]}." in stderr

    filler.unlink()
    filler = leave_free(small_disk, checkpoint // 2)  # the next checkpoint cannot fit
    stopped = run_train(
        out, check=False, resume_from_checkpoint="latest", **options, in_process=False
    )
    assert stopped.returncode == 2
    assert "No space left for checkpoint step-6" in stopped.stderr
    assert "the last complete checkpoint is" in stopped.stderr and "step-3." in stopped.stderr
    assert sorted(path.name for path in (out / "checkpoints").iterdir()) == ["step-3"]

    filler.unlink()
    filler = leave_free(small_disk, checkpoint + final // 2)  # step-6 fits, final/ not
    stopped = run_train(
        out, check=False, resume_from_checkpoint="latest", **options, in_process=False
    )
    assert stopped.returncode == 2
    assert "No space left on device" in stopped.stderr and "step-6." in stopped.stderr
    assert not (out / "final").exists() and not (out / ".tmp-final").exists()

    filler.unlink()
    run_train(out, resume_from_checkpoint="latest", **options, in_process=False)
    assert losses(out) == losses(reference)
    weights, resumed = final_weights(reference), final_weights(out)
    assert all(weights[name].equal(resumed[name]) for name in weights)

    cache = small_disk / "datasets-cache"
    filler = leave_free(small_disk, 0)
    env = environment(HF_DATASETS_CACHE=str(cache))
    stopped = run_train(tmp_path / "cached", check=False, env=env, **options)
    assert stopped.returncode == 2
    assert f"No space left on device for the datasets cache, {cache}" in stopped.stderr
    filler.unlink()
    run_train(tmp_path / "cached", env=env, **options)
