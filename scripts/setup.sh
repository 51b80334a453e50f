#!/usr/bin/env bash
# Create .venv with everything the demo, the tests and the benchmark need. Idempotent and quick
# once done. torch is always a CPU build: this machine kind keeps torch 2.13.0 on local disk
# (pip's find-links) and that is taken when present; elsewhere it comes from PyTorch's CPU index,
# never the multi-GB CUDA build. TORCH_SPEC (e.g. "torch==2.9.1") picks another version.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
stamp=".venv/.installed-$(cat requirements-dev.txt scripts/setup.sh | sha256sum | cut -c1-16)"
install() {  # quiet, minus this machine's notices about missing local index folders
    .venv/bin/python -m pip install -q "$@" 2> >(grep -v "^WARNING: Location" >&2)
}
if [ ! -f "$stamp" ]; then
    echo "Setting up .venv ..."
    install --upgrade pip
    if [ -z "${TORCH_SPEC:-}" ] && install --no-index --no-deps torch==2.13.0 2>/dev/null; then
        install torch==2.13.0  # its dependencies, from the package index
    else
        install "${TORCH_SPEC:-torch==2.13.0}" --index-url https://download.pytorch.org/whl/cpu \
            --extra-index-url https://pypi.org/simple
    fi
    install -r requirements-dev.txt
    touch "$stamp"
fi
