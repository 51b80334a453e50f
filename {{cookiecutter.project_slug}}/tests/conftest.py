"""Helpers that run the real train.py (through `accelerate launch` for several processes) on tiny
settings and read back what it wrote. Nothing here mocks the training stack."""

import contextlib
import csv
import hashlib
import io
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before anything imports huggingface_hub
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402
from safetensors.torch import load_file  # noqa: E402
from task_settings import TINY_TASK_OPTIONS, WIDER_MODEL  # noqa: E402

PROJECT = Path(__file__).resolve().parents[1]
TASK_ASSETS = PROJECT / "assets"
# Small, fast runs; each test adds what it varies. Dropout is off in the tiny model configs.
TINY = {
    # The embedded model and data, whatever the project defaults to.
    "model_name_or_path": "null",
    "dataset_name": "null",
    "config_name": str(TASK_ASSETS.relative_to(PROJECT) / "tiny-model"),
    "train_file": str(TASK_ASSETS.relative_to(PROJECT) / "data" / "train.jsonl"),
    "validation_file": str(TASK_ASSETS.relative_to(PROJECT) / "data" / "validation.jsonl"),
    "max_train_samples": 50,
    "max_eval_samples": 45,
    "per_device_train_batch_size": 4,
    "per_device_eval_batch_size": 4,
    "num_train_epochs": 3,
    "learning_rate": 3e-3,
    # Adam divides by sqrt(v): a weight whose true gradient is 0 (GPT-2's key bias: softmax ignores
    # it) moves by +-lr on rounding noise alone. A larger epsilon keeps that noise from being
    # amplified, so weight comparisons measure the training, not float summation order.
    "adam_epsilon": 1e-4,
    "warmup_steps": 1,
    "logging_steps": 1,
    "eval_strategy": "no",
    "save_strategy": "no",
    "mixed_precision": "no",
    "report_to": "none",
    "plot_curves": "false",  # matplotlib's 1.5 s at the end of every run: test_workflow draws
    "seed": 0,
    **TINY_TASK_OPTIONS,
}


# Learning rate 0 keeps eval_loss flat: the first evaluation (step 2) stays the best.
FLAT_EVALS_EVERY_2 = {
    "learning_rate": 0.0,
    "warmup_steps": 0,
    "eval_strategy": "steps",
    "eval_steps": 2,
    "save_strategy": "steps",
    "save_steps": 2,
}


# The embedded model and sample data with their columns: what the tests train on.
BUNDLED = {
    name: value
    for name, value in TINY.items()
    if name
    in ("model_name_or_path", "dataset_name", "config_name", "train_file", "validation_file")
    or name.endswith("_column_name")
}


def command(processes, node=None, script="train.py"):
    """train.py in one process, or under `accelerate launch` with `processes` in all. `node`:
    (machine_rank, port, launch options) for one node of a two-node job; the nodes share the
    port of the head node's rendezvous and split the processes between them. `script`: FSDP2
    runs train.py through tests/fsdp2_on_cpu.py."""
    if processes == 1:
        return [sys.executable, script]
    rank, port, extra = node or (0, free_port(), [])
    machines = 2 if node else 1
    return [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        str(processes),
        "--num_machines",
        str(machines),
        "--machine_rank",
        str(rank),
        "--main_process_ip",
        "127.0.0.1",
        "--main_process_port",
        str(port),
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        *extra,
        script,
    ]


def environment(**extra):
    env = dict(
        os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", ACCELERATE_USE_CPU="true", **extra
    )
    env.pop("WORLD_SIZE", None)
    return env


def arguments(output_dir, **options):
    values = {**TINY, "output_dir": str(output_dir), **options}
    return [f"--{name}={value}" for name, value in values.items()]


def finish(args, processes=1, check=True, env=None, in_process=True, script="train.py"):
    """Run train.py with `args` to completion; return the finished run (returncode, stdout and
    stderr captured). One process runs inside this one (finish_here) unless the test gives an
    environment of its own or asks for a process of its own (`in_process=False`): the same code
    path as the command line, minus a Python start and its imports (about 2 s a run)."""
    if processes == 1 and env is None and in_process and script == "train.py":
        result = finish_here(args)
    else:
        process = subprocess.Popen(
            command(processes, script=script) + args,
            cwd=PROJECT,
            env=env or environment(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            stdout, stderr = process.communicate(timeout=600)
        except subprocess.TimeoutExpired:
            # A hung run: its workers too, or they would spin on through the tests after it.
            kill_group(process)
            raise
        result = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
    if check and result.returncode != 0:
        raise AssertionError(f"train.py failed ({result.returncode}):\n{result.stderr[-4000:]}")
    return result


def finish_here(args):
    """train.main(args) in this process, as `python train.py args` would run it: from the project
    directory, in the tests' environment, its output captured, its exit status returned. What a
    run leaves behind in a process is put back: Accelerate's process state (a singleton), the
    signal handlers train.py installs, the directory and the environment."""
    from accelerate.state import AcceleratorState

    import train
    from trainkit.processes import STOP_SIGNALS

    handlers = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
    saved_environment, saved_directory = dict(os.environ), os.getcwd()
    stdout, stderr = io.StringIO(), io.StringIO()
    AcceleratorState._reset_state(reset_partial_state=True)
    os.environ.clear()
    os.environ.update(environment())
    os.chdir(PROJECT)
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            try:
                train.main(args)
                code = 0
            except SystemExit as stop:
                code = stop.code if isinstance(stop.code, int) else int(stop.code is not None)
            except Exception:  # as Python reports an uncaught error: a traceback and status 1
                traceback.print_exc()
                code = 1
    finally:
        os.chdir(saved_directory)
        os.environ.clear()
        os.environ.update(saved_environment)
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
        AcceleratorState._reset_state(reset_partial_state=True)
    return subprocess.CompletedProcess(args, code, stdout.getvalue(), stderr.getvalue())


def run_train(
    output_dir, processes=1, check=True, env=None, in_process=True, script="train.py", **options
):
    """Run train.py on the tiny settings plus `options`."""
    return finish(arguments(output_dir, **options), processes, check, env, in_process, script)


def run_config(config, output_dir, **options):
    """Run train.py with a shipped config file, on the bundled model and data whatever the
    project defaults to (the user's data may not be here), plus `options`."""
    values = {**BUNDLED, "output_dir": output_dir, **options}
    return finish([f"--config={config}"] + [f"--{name}={value}" for name, value in values.items()])


def start_train(output_dir, processes=1, node=None, env=None, script="train.py", **options):
    """Start train.py in its own process group, so a test can signal or kill all its processes."""
    return subprocess.Popen(
        command(processes, node, script) + arguments(output_dir, **options),
        cwd=PROJECT,
        env=env or environment(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def wait_until(process, condition, timeout=300, poll=0.02):
    """Wait until `condition()` is true, or the process ends; True if the condition was met."""
    deadline = time.time() + timeout
    while time.time() < deadline and process.poll() is None:
        if condition():
            return True
        time.sleep(poll)
    return False


def wait_for_step(process, output_dir, step, timeout=300):
    """Wait until metrics.jsonl shows `step`, or the process ends; True if the step was reached."""
    reached = lambda: any(r["step"] >= step for r in train_records(output_dir))  # noqa: E731
    return wait_until(process, reached, timeout)


def kill_group(process, signum=signal.SIGKILL):
    """`signum` to a run started by start_train: its process group and, for SIGKILL, every
    process below it. torchrun starts each worker in a session of its own, so the group's
    signal misses them; a killed launcher's workers then die in their own time, and a resume
    started meanwhile finds the run's lock held by one of them."""
    family = descendants(process.pid)
    os.killpg(process.pid, signum)
    process.wait(timeout=120)
    if signum != signal.SIGKILL:
        return
    for pid in family:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.time() + 60
    while any(map(alive, family)) and time.time() < deadline:
        time.sleep(0.05)


def descendants(pid):
    """Every process below `pid` (Linux: /proc; elsewhere none are found)."""
    found, parents = [], [pid]
    while parents:
        try:
            tasks = list(Path(f"/proc/{parents.pop()}/task").iterdir())
        except OSError:  # it ended between its parent's listing and this one
            continue
        for task in tasks:
            with contextlib.suppress(OSError):
                children = [int(child) for child in (task / "children").read_text().split()]
                found += children
                parents += children
    return found


def alive(pid):
    """Whether `pid` runs: it exists and is not a zombie waiting to be reaped."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def kill_and_resume(tmp_path, processes, kill_at, **options):
    """Reference run, then the same run killed with SIGKILL after update `kill_at` and resumed.
    Returns both output directories and the state of the checkpoint it resumed from."""
    from trainkit.checkpoints import checkpoint_dirs

    reference, interrupted = tmp_path / "reference", tmp_path / "interrupted"
    options = {
        "save_strategy": "steps",
        "save_steps": 4,
        "num_train_epochs": 4,
        **options,
    }
    # Every run compared bit for bit runs as the killed one does, in a process of its own: with
    # some CPU kernels (ATEN_CPU_CAPABILITY=default or avx2 on an AVX-512 machine), a run inside
    # the test process and one in a fresh process differ in their last bits (docs/guarantees.md).
    run_train(reference, processes=processes, in_process=False, **options)
    process = start_train(interrupted, processes=processes, **options)
    assert wait_for_step(process, interrupted, kill_at), "the run ended before it could be killed"
    kill_group(process)
    newest = checkpoint_dirs(interrupted)[-1]
    state = json.loads((newest / "trainer_state.json").read_text())
    resume = {"resume_from_checkpoint": "latest", "in_process": False}
    run_train(interrupted, processes=processes, **resume, **options)
    return reference, interrupted, state


def tree_digest(path):
    """sha256 of every file below `path`, by relative name: proves nothing was touched."""
    files = sorted(p for p in path.rglob("*") if p.is_file())
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def records(output_dir):
    path = Path(output_dir, "metrics.jsonl")
    if not path.exists():
        return []
    lines = path.read_text().splitlines()
    return [
        json.loads(line) for line in lines if line.endswith("}")
    ]  # a killed writer may leave half a line


def train_records(output_dir):
    return [r for r in records(output_dir) if "loss" in r]


def eval_records(output_dir):
    return [r for r in records(output_dir) if "eval_loss" in r]


def losses(output_dir):
    return {r["step"]: r["loss"] for r in train_records(output_dir)}


def learning_rates(output_dir):
    return {r["step"]: r["learning_rate"] for r in train_records(output_dir)}


def final_weights(output_dir):
    return load_file(Path(output_dir, "final", "model.safetensors"))


def record_difference(what, value):
    """A comparison's largest relative difference, appended as a JSON line to the file that
    GUARANTEE_FIGURES names, if set: the template's test run reports the figures per task."""
    if os.environ.get("GUARANTEE_FIGURES"):
        test = os.environ.get("PYTEST_CURRENT_TEST", "").split(" ")[0]
        with open(os.environ["GUARANTEE_FIGURES"], "a") as stream:
            stream.write(json.dumps({"test": test, "what": what, "max_rel": value}) + "\n")


def assert_close_values(a, b, rel, what):
    """Same keys, and every value equal within a relative tolerance."""
    assert a.keys() == b.keys(), f"{what}: different keys {sorted(a)} vs {sorted(b)}"
    for key in a:
        assert math.isclose(a[key], b[key], rel_tol=rel, abs_tol=1e-12), (
            f"{what} at {key}: {a[key]} vs {b[key]}"
        )
    record_difference(what, max(abs(a[k] - b[k]) / max(abs(b[k]), 1e-12) for k in a))


# Floats of two runs that differ in process count, thread count or CPU kernels (docs/guarantees.md):
# their sums run in another order. float32's unit roundoff is 2**-24 (6e-8), and a sum of n terms
# taken in another order can move by about n units of its terms' magnitude (the bound of recursive
# summation). The tiny models' dot products run over at most 128 terms through at most 4 layers:
# 4 * 128 * 6e-8 = 3e-5 of the magnitudes. 1e-4 relative, 1e-6 absolute near zero, is that bound
# with room; a real difference (a sample lost, a wrong weight) moves values by far more.
ACROSS_RUNS = 1e-4


def assert_same_predictions(one, two, rel=ACROSS_RUNS):
    """predict.py's lines of two runs that differ in processes, threads or kernels: the same
    inputs in the same order, the same generated text and tags, floats within `rel`, and the same
    label wherever its margin over the runner-up exceeds what the tolerance lets move."""
    assert len(one) == len(two), "every input predicted once"

    def same(a, b, where):
        if isinstance(a, float) or isinstance(b, float):
            assert math.isclose(a, b, rel_tol=rel, abs_tol=1e-6), f"{where}: {a} vs {b}"
        elif isinstance(a, dict):
            assert a.keys() == b.keys(), f"{where}: {sorted(a)} vs {sorted(b)}"
            close_call = "label" in a and margin(a.get("probabilities")) <= 2 * rel
            for key in a:
                if not (key == "label" and close_call):
                    same(a[key], b[key], f"{where}.{key}")
        elif isinstance(a, list):
            assert len(a) == len(b), f"{where}: {len(a)} vs {len(b)} items"
            for i, (x, y) in enumerate(zip(a, b, strict=True)):
                same(x, y, f"{where}[{i}]")
        else:
            assert a == b, f"{where}: {a!r} vs {b!r}"

    for i, (a, b) in enumerate(zip(one, two, strict=True)):
        same(a, b, f"line {i + 1}")


def margin(probabilities):
    """How far the most probable label is ahead of the next (infinite without probabilities)."""
    if not probabilities or len(probabilities) < 2:
        return math.inf
    first, second = sorted(probabilities.values(), reverse=True)[:2]
    return first - second


def assert_close_weights(a, b, rel):
    """Same parameters, equal within a relative tolerance (absolute 1e-7 near zero)."""
    assert a.keys() == b.keys()
    for name in a:
        assert torch.allclose(a[name], b[name], rtol=rel, atol=1e-7), f"parameter {name} differs"
    # The smallest relative tolerance that passes beside the absolute 1e-7 near zero.
    excess = {n: ((a[n] - b[n]).abs() - 1e-7).clamp_min(0) for n in a}
    needed = [(excess[n] / b[n].abs().clamp_min(1e-30)).max().item() for n in a]
    record_difference("weights (relative, beyond 1e-7 absolute)", max(needed))


def free_port():
    """A TCP port nobody listens on now, for a multi-process launch. Drawn below the kernel's
    range of ephemeral ports (32768 and up on Linux): a port from that range can be taken, before
    the launch binds it, as the local end of a connection, e.g. gloo's in a test running beside."""
    import random
    import socket

    while True:
        port = random.SystemRandom().randrange(20_000, 32_000)  # not the seeded generator
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port


def validation_batch(count=4, **options):
    """The tiny run's config (with `options`) and `count` samples of the bundled validation
    data, collated as training collates them: what a test feeds the task's functions."""
    from accelerate import Accelerator

    import task
    from config import Config
    from trainkit import data
    from trainkit.cli import parse_args

    cfg = parse_args([f"--{k}={v}" for k, v in {**TINY, **options}.items()], Config)
    tokenizer, _ = task.load_tokenizer_and_config(cfg)
    _, eval_set, _ = data.load_datasets(cfg, Accelerator(cpu=True), tokenizer, task)
    return cfg, task.collate(cfg, [eval_set[i] for i in range(count)], tokenizer, None)


def write_rows(path, rows):
    """`rows` (dicts) as a data file in the format its ending names: csv, parquet or jsonl."""
    if path.suffix == ".csv":
        with path.open("w", newline="") as stream:
            writer = csv.DictWriter(stream, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    elif path.suffix == ".parquet":
        import datasets

        datasets.Dataset.from_list(rows).to_parquet(path)
    else:
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def model_copy(directory, **overrides):
    """A copy of the tiny model's directory with some values of its config.json changed."""
    target = Path(directory) / "tiny-model-copy"
    shutil.copytree(PROJECT / TINY["config_name"], target)
    config = json.loads((target / "config.json").read_text())
    (target / "config.json").write_text(json.dumps({**config, **overrides}))
    return target


@pytest.fixture
def model_with_dropout(tmp_path):
    """Dropout on, so resume must restore the RNG too."""
    import inspect

    import task

    config = json.loads((PROJECT / TINY["config_name"] / "config.json").read_text())
    rates = [name for name, value in config.items() if "drop" in name and isinstance(value, float)]
    if not rates and "dropout" in inspect.signature(task.model_class()).parameters:
        rates = ["dropout"]  # model.py's: its size and dropout are its signature's
    assert rates, "the tiny model has no dropout to turn on"
    return model_copy(tmp_path, **{name: 0.1 for name in rates})


@pytest.fixture
def slow_to_save_model(tmp_path):
    """A wider model: checkpoints take longer to write than updates take to run, so random kills
    land inside saves often."""
    return model_copy(tmp_path, **WIDER_MODEL)
