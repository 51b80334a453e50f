"""Bake each task with the default answers and run the generated project's own test suite.

This is the slow part of the template's tests: the generated suites train the tiny model,
including multi-process and kill/resume runs.
"""

import shutil
import subprocess
import sys

import pytest
from conftest import offline_env


@pytest.mark.parametrize("task", ["causal-lm", "text-classification"])
def test_generated_suite_passes(task, bake, tmp_path):
    project = tmp_path / "project"
    shutil.copytree(bake(task=task), project)  # a copy, so the shared bake stays pristine
    assert list((project / "tests").glob("test_*.py")), "the generated project has no tests"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=project,
        capture_output=True,
        text=True,
        env=offline_env(),
        timeout=3600,
    )
    assert result.returncode == 0, f"{task} suite failed:\n{result.stdout[-8000:]}\n{result.stderr[-4000:]}"
