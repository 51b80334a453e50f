#!/usr/bin/env bash
# Create .venv with everything the demo, the tests and the benchmark need. Idempotent and quick
# once done. torch is a CPU build: this machine kind keeps torch 2.13.0 on local disk (pip's
# find-links) and that is taken when present; elsewhere set TORCH_INDEX_URL to an index of CPU
# builds, or pip's default index decides. No index host is named here: pip finds its own.
# TORCH_SPEC (e.g. "torch==2.9.1") picks another version.
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
        # Where pip's configuration finds no CPU build on local disk, TORCH_INDEX_URL names an
        # index of CPU builds (PyTorch publishes one); pip's default index gives the rest.
        install "${TORCH_SPEC:-torch==2.13.0}" ${TORCH_INDEX_URL:+--extra-index-url "$TORCH_INDEX_URL"}
    fi
    install -r requirements-dev.txt
    touch "$stamp"
fi
