"""Hyper-parameter search with Optuna: each trial is a train.py run of its own, with options
drawn from a search space; the study keeps what every trial scored. pip install -e ".[tune]".

    python tune.py --config configs/default.yaml --search configs/search.yaml --n_trials 20
    python tune.py ... --launch "accelerate launch --num_processes 2"   # each trial on 2 processes
    python tune.py ... --storage postgresql://host/db   # many workers, many machines, one study

The objective is the trial's best metric_for_best_model over its evaluations (greater_is_better
sets the direction), so the run's config must evaluate (eval_strategy). Each evaluation is
reported to the pruner as it appears in the trial's metrics.jsonl; a trial the pruner rejects
is stopped (killed: its checkpoints are written atomically, so nothing it leaves looks complete,
and it has no final/). A trial that fails is recorded as failed and the study goes on.

The study lives in a database (default: study.db, SQLite, in --study_dir) and trials in
--study_dir/trial-<number>/. Stop the driver at any moment and start it again: finished trials
stay, --n_trials counts them all, and a trial left running by a driver that died is marked failed
(and its process stopped) once its heartbeat is older than 3 x --heartbeat seconds. At the end:
best.yaml (the best trial's config, ready to run) and trials.md (every trial) in --study_dir.
"""

import argparse
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

import yaml

from config import Config
from trainkit import plots
from trainkit.cli import parse_args
from trainkit.options import UsageError

PROJECT = Path(__file__).resolve().parent


class TrialFailed(Exception):
    """train.py exited with an error: the study records the trial as failed and goes on."""


def suggest(trial, name, space):
    """One option's value from its search-space entry: choices, or low/high (ints: an int)."""
    if "choices" in space:
        return trial.suggest_categorical(name, space["choices"])
    low, high, log, step = space["low"], space["high"], space.get("log", False), space.get("step")
    if isinstance(low, int) and isinstance(high, int) and not isinstance(low, bool):
        return trial.suggest_int(name, low, high, log=log, step=step or 1)
    return trial.suggest_float(name, float(low), float(high), log=log, step=step)


def read_search_space(path):
    space = yaml.safe_load(Path(path).read_text()) or {}
    for name, entry in space.items():
        if name not in Config.__dataclass_fields__:
            raise UsageError(f"{path}: {name} is not an option of train.py.")
        keys = entry.keys() if isinstance(entry, dict) else set()
        if not ({"choices"} <= keys or {"low", "high"} <= keys):
            raise UsageError(f"{path}: {name} needs choices: [...], or low: and high:.")
    return space


def stop_process_group(pid):
    """Kill a trial's train.py processes, if that process group is still one of ours."""
    try:
        if b"train.py" in Path(f"/proc/{pid}/cmdline").read_bytes():
            os.killpg(pid, signal.SIGKILL)
    except (OSError, ProcessLookupError):
        pass


def stop_stale_trial(study, trial):
    """Optuna's call for a trial whose driver stopped beating: stop its training here."""
    process = trial.user_attrs.get("process", {})
    if process.get("host") == socket.gethostname():
        stop_process_group(process["pid"])


def objective(trial, args, train_args, cfg, space):
    import optuna

    options = {name: suggest(trial, name, entry) for name, entry in space.items()}
    out = Path(args.study_dir, f"trial-{trial.number}")
    overrides = [f"--{name}={value}" for name, value in options.items()]
    launch = shlex.split(args.launch) if args.launch else [sys.executable]
    command = [*launch, str(PROJECT / "train.py"), *train_args, *overrides, f"--output_dir={out}"]
    out.mkdir(parents=True, exist_ok=True)
    with (out / "log.txt").open("w") as log:
        # A session of its own: the trial's processes stop together, and survive a killed driver
        # until the next driver finds them stale.
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    where = {"host": socket.gethostname(), "pid": process.pid, "driver": os.getpid()}
    trial.set_user_attr("process", where)
    trial.set_user_attr("output_dir", str(out))
    print(f"trial {trial.number}: {' '.join(overrides)}", flush=True)
    reported = set()
    try:
        while True:
            finished = process.poll() is not None
            evals = plots.read_run(out)[1] if (out / "metrics.jsonl").is_file() else []
            for record in evals:
                if record["step"] not in reported and cfg.metric_for_best_model in record:
                    reported.add(record["step"])
                    trial.report(record[cfg.metric_for_best_model], record["step"])
                    if trial.should_prune():
                        raise optuna.TrialPruned(f"at update {record['step']}")
            if finished:
                break
            time.sleep(0.25)  # a pruned trial stops within a quarter second
    finally:
        if process.poll() is None:  # pruned, or the driver stops: the trial stops too
            stop_process_group(process.pid)
            process.wait()
    if process.returncode != 0:
        raise TrialFailed(f"train.py exited with {process.returncode}: see {out / 'log.txt'}")
    value, _ = plots.best(evals, vars(cfg))
    if value is None:
        raise TrialFailed(f"no {cfg.metric_for_best_model} in {out / 'metrics.jsonl'}")
    return value


def write_summary(study, directory, cfg):
    """best.yaml and trials.md in the study directory."""
    import optuna

    lines = [f"| trial | state | {cfg.metric_for_best_model} | options |", "|---|---|---|---|"]
    for trial in study.trials:
        value = "" if trial.value is None else f"{trial.value:.4g}"
        options = ", ".join(
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in trial.params.items()
        )
        lines.append(f"| {trial.number} | {trial.state.name} | {value} | {options} |")
    Path(directory, "trials.md").write_text("\n".join(lines) + "\n")
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
        return None
    best = study.best_trial
    config = yaml.safe_load(Path(best.user_attrs["output_dir"], "config.yaml").read_text())
    config.update(output_dir=f"outputs/best-of-{study.study_name}", overwrite_output_dir=False)
    Path(directory, "best.yaml").write_text(
        f"# The best trial of study {study.study_name}: trial {best.number}, "
        f"{cfg.metric_for_best_model} {best.value:.4g}. Run: python train.py --config THIS_FILE\n"
        + yaml.safe_dump(config, sort_keys=True)
    )
    return best


def main(argv):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Every other argument goes to each trial's train.py: --config FILE.yaml (the "
        "run every trial starts from; repeatable) and any --option value of train.py --help.",
    )
    parser.add_argument("--search", default="configs/search.yaml", help="The search space.")
    parser.add_argument("--n_trials", type=int, default=20, help="Finished trials to reach.")
    parser.add_argument("--study_dir", default="outputs/tune", help="Trials, study.db, results.")
    parser.add_argument("--storage", default=None, help="An Optuna RDB URL; default: SQLite.")
    parser.add_argument("--launch", default=None, help='e.g. "accelerate launch --num_processes 2"')
    parser.add_argument("--pruner", choices=["median", "none"], default="median")
    parser.add_argument("--heartbeat", type=int, default=10, help="Seconds between heartbeats.")
    args, train_args = parser.parse_known_args(argv)
    try:
        import optuna
    except ImportError:
        sys.exit('error: tune.py needs optuna: pip install -e ".[tune]"')
    # Heartbeats (a killed worker's trial is failed and retried) are marked experimental in
    # Optuna; they are what makes a killed driver resumable here, so the warning says nothing new.
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    try:
        cfg = parse_args(train_args, Config)
        if cfg.eval_strategy == "no":
            raise UsageError("tune.py scores trials by their evaluations: set eval_strategy.")
        # A search file counts from where you are, else from the project, as config files do.
        search = args.search if Path(args.search).exists() else PROJECT / args.search
        space = read_search_space(search)
    except UsageError as error:
        sys.exit(f"error: {error}")
    # SIGTERM (a scheduler, kill) stops the running trial as Ctrl-C does.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    Path(args.study_dir).mkdir(parents=True, exist_ok=True)
    url = args.storage or f"sqlite:///{Path(args.study_dir, 'study.db').resolve()}"
    storage = optuna.storages.RDBStorage(
        url, heartbeat_interval=args.heartbeat, grace_period=3 * args.heartbeat,
        heartbeat_stale_trial_callback=stop_stale_trial,
    )  # fmt: skip
    # Median: a trial is stopped when it scores worse than the median of earlier trials at the
    # same update; from the second trial on.
    pruners = {"median": optuna.pruners.MedianPruner(n_startup_trials=1), "none": None}
    study = optuna.create_study(
        study_name=Path(args.study_dir).resolve().name, storage=storage, load_if_exists=True,
        direction="maximize" if cfg.greater_is_better else "minimize", pruner=pruners[args.pruner],
    )  # fmt: skip
    finished = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    done = len(study.get_trials(states=finished))
    if done < args.n_trials:
        study.optimize(
            lambda trial: objective(trial, args, train_args, cfg, space),
            callbacks=[optuna.study.MaxTrialsCallback(args.n_trials, states=finished)],
            catch=(TrialFailed,),
        )
    best = write_summary(study, args.study_dir, cfg)
    if best is not None:
        metric = f"{cfg.metric_for_best_model} {best.value:.4g}"
        print(f"best: trial {best.number}, {metric}; config: {args.study_dir}/best.yaml")


if __name__ == "__main__":
    main(sys.argv[1:])
