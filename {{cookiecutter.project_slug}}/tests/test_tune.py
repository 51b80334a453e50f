"""tune.py: an Optuna study whose trials are train.py runs. Pruning stops a trial, a killed
driver's study continues without losing or rerunning a finished trial, two workers share one
study. The same code for every task: these run for the first task only."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import PROJECT, TINY, environment

from config import Config
from trainkit.cli import parse_args

optuna = pytest.importorskip("optuna", reason='tune.py needs optuna: pip install -e ".[tune]"')
# Studies of several trial runs each: long proofs (python -m pytest -m slow).
pytestmark = [pytest.mark.loop, pytest.mark.slow]
FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
# Trials long enough to be stopped while they run: the driver looks once a second.
LONG = {"max_steps": 150, "eval_steps": 25}


def tune_command(study_dir, search, n_trials, *extra, **options):
    """tune.py on the tiny settings; each trial evaluates every 2 updates."""
    search_file = Path(study_dir).parent / f"{Path(study_dir).name}-search.yaml"
    search_file.write_text(yaml.safe_dump(search))
    values = {**TINY, "max_steps": 6, "eval_strategy": "steps", "eval_steps": 2, **options}
    return [
        sys.executable, "tune.py", "--search", str(search_file), "--n_trials", str(n_trials),
        "--study_dir", str(study_dir), "--heartbeat", "1", *extra,
        *(f"--{name}={value}" for name, value in values.items()),
    ]  # fmt: skip


def run_tune(*args, **options):
    done = subprocess.run(
        tune_command(*args, **options), cwd=PROJECT, env=environment(), capture_output=True,
        text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_help_names_the_config_and_the_options_that_go_to_train_py():
    done = subprocess.run(
        [sys.executable, "tune.py", "--help"], cwd=PROJECT, capture_output=True, text=True
    )
    assert done.returncode == 0 and "--config FILE.yaml" in " ".join(done.stdout.split())


def load_study(study_dir):
    url = f"sqlite:///{Path(study_dir, 'study.db').resolve()}"
    return optuna.load_study(study_name=Path(study_dir).name, storage=url)


def test_a_trial_worse_than_the_median_is_pruned_and_the_best_config_is_written(tmp_path):
    study_dir = tmp_path / "study"
    study_dir.mkdir()
    url = f"sqlite:///{study_dir / 'study.db'}"
    queued = optuna.create_study(study_name="study", storage=url, direction="minimize")
    # A trial that learns, then one that cannot (learning rate 0): it scores worse than the first
    # at its first evaluation and is stopped there.
    queued.enqueue_trial({"learning_rate": 3e-3})
    queued.enqueue_trial({"learning_rate": 0.0})
    done = run_tune(study_dir, {"learning_rate": {"choices": [3e-3, 1e-3, 0.0]}}, 3, **LONG)
    assert "ExperimentalWarning" not in done.stderr, "Optuna's heartbeats are on purpose"

    trials = load_study(study_dir).trials
    assert [t.state for t in trials[:2]] == [FINISHED[0], FINISHED[1]]
    assert len(trials) == 3 and trials[2].state in FINISHED
    pruned = Path(trials[1].user_attrs["output_dir"])
    records = (pruned / "metrics.jsonl").read_text().splitlines()
    steps = [json.loads(line)["step"] for line in records]
    assert max(steps) < LONG["max_steps"] and not (pruned / "final").exists()
    # best.yaml runs as it is; trials.md lists every trial.
    best = min((t for t in trials if t.state == FINISHED[0]), key=lambda t: t.value)
    cfg = parse_args(["--config", str(study_dir / "best.yaml")], Config)
    assert cfg.learning_rate == best.params["learning_rate"]
    table = (study_dir / "trials.md").read_text().splitlines()
    assert len(table) == 2 + 3 and "| 1 | PRUNED |" in table[3]


@pytest.mark.slow
def test_a_killed_driver_continues_where_it_stopped(tmp_path):
    """SIGKILL to the driver mid-trial: the restarted driver keeps the finished trial, marks the
    orphaned one failed once its heartbeat is stale, stops its process, and reaches n_trials."""
    study_dir = tmp_path / "study"
    study_dir.mkdir()
    url = f"sqlite:///{study_dir / 'study.db'}"
    queued = optuna.create_study(study_name="study", storage=url, direction="minimize")
    # Short trials, but the second far longer than the test: it can only end by being stopped.
    for steps in (20, 3000, 20, 20):
        queued.enqueue_trial({"max_steps": steps})
    search = {"max_steps": {"choices": [20, 3000]}}
    driver = subprocess.Popen(
        tune_command(study_dir, search, 3, "--pruner", "none", eval_steps=10), cwd=PROJECT,
        env=environment(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    deadline = time.time() + 300
    while not (study_dir / "trial-1" / "metrics.jsonl").exists() and time.time() < deadline:
        time.sleep(0.5)
    first = load_study(study_dir).trials[0]
    orphan = load_study(study_dir).trials[1].user_attrs["process"]["pid"]
    os.kill(driver.pid, signal.SIGKILL)
    driver.wait()
    assert first.state == FINISHED[0]
    assert Path(f"/proc/{orphan}").exists(), "the trial outlives its driver"

    time.sleep(4)  # past the grace period of 3 heartbeats
    run_tune(study_dir, search, 3, "--pruner", "none", eval_steps=10)
    trials = load_study(study_dir).trials
    assert trials[0].value == first.value and trials[0].state == FINISHED[0]
    assert trials[1].state == optuna.trial.TrialState.FAIL
    cmdline = Path(f"/proc/{orphan}/cmdline")
    stopped = not cmdline.exists() or b"train.py" not in cmdline.read_bytes()
    assert stopped and not (study_dir / "trial-1" / "final").exists(), "stopped, not finished"
    assert [t.state for t in trials[2:]] == [FINISHED[0], FINISHED[0]]
    assert (study_dir / "best.yaml").is_file()


def test_two_workers_share_one_study(tmp_path):
    study_dir = tmp_path / "study"
    study_dir.mkdir()
    url = f"sqlite:///{study_dir / 'study.db'}"
    optuna.create_study(study_name="study", storage=url, direction="minimize")  # made once
    search = {"learning_rate": {"low": 1e-4, "high": 1e-2, "log": True}}
    workers = [
        subprocess.Popen(
            tune_command(study_dir, search, 4, "--pruner", "none"),
            cwd=PROJECT,
            env=environment(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    for worker in workers:
        assert worker.wait(timeout=600) == 0, worker.stderr.read()[-3000:]
    trials = load_study(study_dir).trials
    complete = [t for t in trials if t.state == FINISHED[0]]
    # Each worker stops once the study holds 4 finished trials; one may finish a last one.
    assert 4 <= len(complete) <= 5
    assert len({t.user_attrs["output_dir"] for t in trials}) == len(trials)
    assert len({t.user_attrs["process"]["driver"] for t in trials}) == 2, "both workers ran trials"
