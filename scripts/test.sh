#!/usr/bin/env bash
# The whole test suite: template tests, which bake projects and run each project's own tests
# (including the 2-process and kill/resume runs). Extra arguments go to pytest.
# About 18 minutes on an idle 2-core machine (docs/testing.md); the generated suites
# print a line per test as they go (from build/test-logs/), so a long wait is visibly progress.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
mkdir -p build/test-logs
# A two-node SLURM on this machine for the SLURM test (scripts/slurm.sh: Debian's slurm-wlm, as
# root); where it cannot start, that test runs slurm/train.sbatch under stand-ins instead.
if slurm=$(scripts/slurm.sh start 2> build/slurm-start.log); then
    eval "$slurm"
else
    echo "No SLURM here (build/slurm-start.log): the SLURM test uses stand-ins for srun and scontrol."
fi
rm -f build/test-logs/*.log
# One progress log per job (tests/test_generated_suites.py's JOBS).
logs="$(cd tests && ../.venv/bin/python -c "from test_generated_suites import JOBS; print(*(f'build/test-logs/{job[0]}.log' for job in JOBS))")"
touch $logs
tail -n +1 -F $logs 2>/dev/null \
    | grep --line-buffered -E "^==>|PASSED|FAILED|ERROR|SKIPPED" &
progress=$!
trap 'kill $progress 2>/dev/null || true' EXIT
# Two workers: one runs the generated suites (two at a time, test_generated_suites.py), the other
# the quick template tests.
HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 .venv/bin/python -m pytest -n 2 tests "$@"
