#!/usr/bin/env bash
# The whole test suite: template tests, which bake projects and run each project's own tests
# (including the 2-process and kill/resume runs). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# Two workers on two cores: the two generated suites (the slow part) run side by side.
HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 .venv/bin/python -m pytest -n 2 --dist loadgroup tests "$@"
