#!/usr/bin/env bash
# The whole test suite: template tests, which bake projects and run each project's own tests
# (including the 2-process and kill/resume runs). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 .venv/bin/python -m pytest tests "$@"
