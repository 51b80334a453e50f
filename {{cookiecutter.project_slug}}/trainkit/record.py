"""What reproduces a run: record.json, written beside config.yaml when a run starts and copied
into every checkpoint. It holds the command line (and the `accelerate launch` line around it),
the environment variables that steer a launch, the project's git commit, whether its tree was
dirty (the diff then goes to record.diff), package versions, Python, devices, processes and
seeds. config.yaml holds every option's value.

    python -m trainkit.record outputs/default                        # what differs from the record
    python -m trainkit.record outputs/default --rerun outputs/again  # again: same launch, config

A rerun starts the recorded launch with the run's config.yaml, into a new output_dir and from
the first update (a run that was resumed reruns whole). It says first where this machine
differs from the record (commit, diff, versions), since that is where a rerun may part from it.
"""

import argparse
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

# The project directory: the kit's parent.
PROJECT = Path(__file__).resolve().parents[1]
PACKAGES = (
    "torch", "transformers", "accelerate", "datasets", "evaluate", "safetensors", "tokenizers",
    "peft", "numpy", "huggingface_hub",
)  # fmt: skip
# Variables that change what a launch does; names with a secret in them are never written.
STEERING = ("ACCELERATE_", "CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS", "HF_", "PYTHONHASHSEED")
SECRET = ("TOKEN", "KEY", "SECRET", "PASSWORD")


def git(*args):
    """git's output in the project directory; None outside a repository or without git."""
    try:
        done = subprocess.run(["git", *args], cwd=PROJECT, capture_output=True, text=True)
    except OSError:
        return None
    return done.stdout if done.returncode == 0 else None


def launcher_command():
    """The `accelerate launch` (or torchrun) command that started this process, if one did."""
    try:
        parent = Path(f"/proc/{os.getppid()}/cmdline").read_bytes().split(b"\0")[:-1]
    except OSError:  # not Linux: the launcher stays unknown
        return None
    words = [word.decode(errors="replace") for word in parent]
    launchers = ("accelerate", "torchrun", "accelerate.commands.launch")
    launched = any(word.endswith(launchers) for word in words)
    return words if launched else None


def collect(cfg, accelerator):
    import torch

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain")
    devices = (
        [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        if torch.cuda.is_available()
        else [f"cpu: {platform.processor() or platform.machine()}, {os.cpu_count()} cores"]
    )
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return {
        "command": [sys.executable, *sys.argv],
        "launcher": launcher_command(),
        "cwd": os.getcwd(),
        "environment": {
            name: value
            for name, value in sorted(os.environ.items())
            if name.startswith(STEERING) and not any(word in name for word in SECRET)
        },
        "git": {
            "commit": commit.strip() if commit else None,
            "dirty": bool(status and status.strip()),
            "untracked": [line[3:] for line in (status or "").splitlines() if line[:2] == "??"],
        },
        "python": sys.version.split()[0],
        "packages": versions,
        "platform": platform.platform(),
        "devices": devices,
        "processes": accelerator.num_processes,
        "started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "seed": cfg.seed,
        "data_seed": cfg.data_seed,
        "local_paths": local_paths(cfg),
    }


def local_paths(cfg):
    """Every option naming a file or directory here (model, tokenizer, data, metric modules,
    checkpoint), resolved: what the run read, wherever it lies, outside the project too."""
    return {
        name: str(Path(value).resolve())
        for name, value in vars(cfg).items()
        if isinstance(value, str) and value and name != "output_dir" and Path(value).exists()
    }


def write(cfg, accelerator, directory):
    """record.json (and record.diff for a dirty tree) in `directory`; main process only."""
    record = collect(cfg, accelerator)
    directory = Path(directory)
    (directory / "record.json").write_text(json.dumps(record, indent=2) + "\n")
    diff = git("diff", "HEAD") if record["git"]["dirty"] else None
    if diff:
        (directory / "record.diff").write_text(diff)
    else:
        (directory / "record.diff").unlink(missing_ok=True)


def differences(record):
    """Where this machine and project differ from the record, one line each."""
    found = []
    commit = git("rev-parse", "HEAD")
    commit = commit.strip() if commit else None
    if commit != record["git"]["commit"]:
        found.append(f"git commit {commit} here, {record['git']['commit']} recorded")
    if record["git"]["dirty"]:
        found.append("the recorded tree was dirty: record.diff holds its changes")
    for name, version in record["packages"].items():
        try:
            here = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            here = None
        if here != version:
            found.append(f"{name} {here} here, {version} recorded")
    if sys.version.split()[0] != record["python"]:
        found.append(f"Python {sys.version.split()[0]} here, {record['python']} recorded")
    return found


def rerun_command(record, run_dir, output_dir):
    """The recorded launch, with train.py reading the run's config.yaml into `output_dir`."""
    launch = record["launcher"] or record["command"]
    script = next(i for i, word in enumerate(launch) if word.endswith("train.py"))
    prefix = launch[:script] if record["launcher"] else [sys.executable]
    options = ["--config", str(Path(run_dir, "config.yaml")), "--output_dir", str(output_dir)]
    return [*prefix, str(PROJECT / "train.py"), *options, "--resume_from_checkpoint", "null"]


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", help="A run's output_dir (or a checkpoint) holding record.json.")
    parser.add_argument("--rerun", metavar="OUTPUT_DIR", help="Run it again into this directory.")
    args = parser.parse_args(argv)
    path = Path(args.run_dir, "record.json")
    if not path.is_file():
        sys.exit(f"error: {path} does not exist: no run recorded there.")
    record = json.loads(path.read_text())
    for line in differences(record) or ["nothing: same commit, clean tree, same versions"]:
        print(f"differs: {line}")
    if not args.rerun:
        return 0
    command = rerun_command(record, args.run_dir, args.rerun)
    print("rerun:", " ".join(command), flush=True)
    environment = {**os.environ, **record["environment"]}
    return subprocess.run(command, cwd=record["cwd"], env=environment).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
