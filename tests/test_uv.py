"""A generated project installs and trains with uv from its pyproject.toml alone, as with pip:
`uv sync --extra dev`, then `uv run train.py`. uv installs from PyPI, torch included (on Linux
PyPI's torch is a CUDA build: about 3 GB the first time, then from uv's cache)."""

import shutil
import subprocess

import pytest
from conftest import DEFAULTS, offline_env, tool

# Words of uv's errors when PyPI cannot be reached at all.
UNREACHABLE = ("dns error", "Connect", "failed to lookup address")


def test_uv_sync_and_uv_run_train_the_generated_project(bake, tmp_path):
    project = tmp_path / "project"
    shutil.copytree(bake(task=DEFAULTS["task"][0]), project)
    try:
        synced = subprocess.run(
            [*tool("uv"), "sync", "--extra", "dev"],
            cwd=project, capture_output=True, text=True, timeout=1200,
        )  # fmt: skip
        if synced.returncode != 0 and any(word in synced.stderr for word in UNREACHABLE):
            pytest.skip(f"PyPI cannot be reached from here: {synced.stderr.splitlines()[-1]}")
        assert synced.returncode == 0, synced.stderr[-3000:]
        assert (project / "uv.lock").is_file()
        trained = subprocess.run(
            [*tool("uv"), "run", "train.py", "--config", "configs/debug.yaml"],
            cwd=project, env=offline_env(), capture_output=True, text=True, timeout=900,
        )  # fmt: skip
        assert trained.returncode == 0, trained.stderr[-3000:]
        assert "Done: " in trained.stdout
        assert (project / "outputs" / "debug" / "final" / "model.safetensors").is_file()
    finally:
        # The environment holds a CUDA build of torch: gigabytes, not kept past the test.
        shutil.rmtree(project / ".venv", ignore_errors=True)
