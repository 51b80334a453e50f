#!/usr/bin/env bash
# Create .venv with everything the demo, the tests and the benchmark need. Idempotent and quick
# once done. TORCH_SPEC overrides the torch pin (default: the CPU build this machine kind has).
set -euo pipefail
cd "$(dirname "$0")/.."
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0}"
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
stamp=".venv/.installed-$(cat requirements-dev.txt scripts/setup.sh | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q "$TORCH_SPEC"
    .venv/bin/python -m pip install -q -r requirements-dev.txt
    touch "$stamp"
fi
