"""Bake each task with the default answers and run the generated project's own test suite.

This is the slow part of the template's tests: the generated suites train the tiny model,
including multi-process and kill/resume runs. Each suite writes its progress, a line per test,
to build/test-logs/<task>.log as it goes; scripts/test.sh shows those lines while it waits.
"""

import shutil
import subprocess
import sys

import pytest
from conftest import TEMPLATE, offline_env

LOGS = TEMPLATE / "build" / "test-logs"


# Under `pytest -n 2 --dist loadgroup` (scripts/test.sh) the two suites run side by side, one per
# core (conftest.py puts every other test in one of these two groups).
@pytest.mark.parametrize(
    "task",
    [
        pytest.param("causal-lm", marks=pytest.mark.xdist_group("causal-lm")),
        pytest.param("text-classification", marks=pytest.mark.xdist_group("text-classification")),
    ],
)
def test_generated_suite_passes(task, bake, tmp_path):
    project = tmp_path / "project"
    shutil.copytree(bake(task=task), project)  # a copy, so the shared bake stays pristine
    assert list((project / "tests").glob("test_*.py")), "the generated project has no tests"
    LOGS.mkdir(parents=True, exist_ok=True)
    log = LOGS / f"{task}.log"
    with log.open("w") as stream:
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "-v", "-p", "no:cacheprovider", "--durations=5"],
            cwd=project,
            stdout=stream,
            stderr=subprocess.STDOUT,
            env={**offline_env(), "OMP_NUM_THREADS": "1"},  # tiny models: one thread each, two suites at once
            timeout=3600,
        )
    assert result.returncode == 0, f"{task} suite failed:\n{log.read_text()[-8000:]}"
