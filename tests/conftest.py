"""Fixtures that generate projects through the real cookiecutter command line.

Every bake runs `cookiecutter --no-input` in a subprocess, exactly as a user would, with a private
cookiecutter config so the user's own defaults and replay directory are never read or written.
"""

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


@pytest.fixture(scope="session")
def bake(tmp_path_factory, run_cookiecutter):
    """bake(**answers) -> Path of the generated project; the same answers are baked once."""
    baked = {}

    def bake_(**answers):
        key = json.dumps(answers, sort_keys=True)
        if key not in baked:
            output_dir = tmp_path_factory.mktemp("baked")
            result = run_cookiecutter(output_dir, **answers)
            assert result.returncode == 0, f"cookiecutter failed for {answers}:\n{result.stderr}"
            (project,) = output_dir.iterdir()
            baked[key] = project
        return baked[key]

    return bake_
