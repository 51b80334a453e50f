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
install() {  # quiet, minus this machine's notices about missing local index folders
    .venv/bin/python -m pip install -q "$@" 2> >(grep -v "^WARNING: Location" >&2)
}
if [ ! -f "$stamp" ]; then
    echo "Setting up .venv (torch: $TORCH_SPEC) ..."
    install --upgrade pip
    install "$TORCH_SPEC"
    install -r requirements-dev.txt
    touch "$stamp"
fi
