#!/usr/bin/env bash
# The main job: generate a project with the default answers and train it offline to final/.
# Pass answers to change them, e.g. scripts/demo.sh task=text-classification
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
rm -rf build/demo
.venv/bin/python scripts/generate.py --no-input --output-dir build/demo "$@"
cd build/demo/*/
HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 ../../../.venv/bin/python train.py --config configs/default.yaml
