"""Fixtures that generate projects through the real cookiecutter command line.

Every bake runs `cookiecutter --no-input` in a subprocess, exactly as a user would, with a private
cookiecutter config so the user's own defaults and replay directory are never read or written.
"""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

TEMPLATE = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DEFAULTS = json.loads((TEMPLATE / "cookiecutter.json").read_text())


def tool(name):
    """A console script of the interpreter running the tests (the project's .venv)."""
    path = BIN / name
    return [str(path)] if path.exists() else [sys.executable, "-m", name]


def offline_env():
    return {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


@pytest.fixture(scope="session")
def cookiecutter_config(tmp_path_factory):
    home = tmp_path_factory.mktemp("cookiecutter-home")
    config = home / "config.yaml"
    config.write_text(
        f"cookiecutters_dir: {json.dumps(str(home / 'cookiecutters'))}\n"
        f"replay_dir: {json.dumps(str(home / 'replay'))}\n"
    )
    return config


@pytest.fixture(scope="session")
def run_cookiecutter(cookiecutter_config):
    """run_cookiecutter(output_dir, **answers) -> CompletedProcess, never raising."""

    def run(output_dir, **answers):
        command = [
            *tool("cookiecutter"),
            "--no-input",
            "--config-file",
            str(cookiecutter_config),
            "--output-dir",
            str(output_dir),
            str(TEMPLATE),
            *(f"{key}={value}" for key, value in answers.items()),
        ]
        return subprocess.run(command, capture_output=True, text=True, env=offline_env(), timeout=120)

    return run


def write_data_file(path, columns=("text", "label")):
    """A small data file in the format its ending names, rows of sentences and labels."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [
        {columns[0]: f"sentence number {i} is {'good' if i % 2 else 'bad'}", **dict.fromkeys(columns[1:], str(i % 2))}
        for i in range(40)
    ]
    if path.suffix == ".csv":
        with path.open("w", newline="") as stream:
            writer = csv.DictWriter(stream, fieldnames=list(columns))
            writer.writeheader()
            writer.writerows(rows)
    elif path.suffix == ".txt":
        path.write_text("".join(row[columns[0]] + "\n" for row in rows))
    elif path.suffix == ".json":
        path.write_text(json.dumps(rows))
    else:
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


@pytest.fixture(scope="session")
def bake(tmp_path_factory, run_cookiecutter):
    """bake(**answers) -> Path of the generated project; the same answers are baked once. A
    relative local `dataset` is written first, in the folder the project is created in, with
    the columns `data_columns` names (default text, label)."""
    baked = {}

    def bake_(data_columns=("text", "label"), **answers):
        key = json.dumps([answers, data_columns], sort_keys=True)
        if key not in baked:
            output_dir = tmp_path_factory.mktemp("baked")
            dataset = answers.get("dataset", "sample")
            if dataset.endswith(tuple(DEFAULTS["_data_files"])) and not Path(dataset).is_absolute():
                write_data_file(output_dir / dataset, data_columns)
            result = run_cookiecutter(output_dir, **answers)
            assert result.returncode == 0, f"cookiecutter failed for {answers}:\n{result.stderr}"
            (project,) = [path for path in output_dir.iterdir() if (path / "train.py").is_file()]
            baked[key] = project
        return baked[key]

    return bake_
