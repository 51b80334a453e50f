#!/usr/bin/env bash
# Fill a folder with the wheels the GPU machine lacks, where PyPI is reachable (not on the GPU
# machine, which reaches nothing). gpu_check.sh --wheels DIR installs them there.
#
#   bash bench/gpu/fetch_wheels.sh [DIR] [--with-bitsandbytes]    # DIR: build/gpu-wheels
#   PYTHON_VERSION=3.11 bash bench/gpu/fetch_wheels.sh DIR         # for another Python (a CPU try)
#
# The machine (nvidia-h200, Python 3.12) has torch, transformers, accelerate, peft, pyarrow,
# pandas, fsspec, huggingface_hub, xxhash, requests, jinja2, click, rich, pyyaml; it lacks:
#   datasets (the project reads its data with it), evaluate (the template's dependency; causal-lm
#   does not import it), dill and multiprocess (datasets' own), and cookiecutter with the four
#   packages it needs that are missing there (binaryornot, python-slugify, text-unidecode, arrow
#   and arrow's tzdata): the check bakes the project as a user would.
# --with-bitsandbytes adds bitsandbytes (41 MB, CUDA 11.8 to 13.2 builds inside): QLoRA runs
# instead of being SKIPPED. The pins are the versions the template's own environment runs.
# Everything carried to the machine (working tree and carried folders) must stay under 64 MiB.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
dir="build/gpu-wheels"
bitsandbytes=false
for arg in "$@"; do
    case "$arg" in
        --with-bitsandbytes) bitsandbytes=true ;;
        -*) echo "error: unknown option $arg" >&2; exit 2 ;;
        *) dir="$arg" ;;
    esac
done
python="${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}"
packages=(
    datasets==5.2.0 evaluate==0.4.6 dill==0.4.1 multiprocess==0.70.19
    cookiecutter==2.7.1 binaryornot==0.6.0 python-slugify==9.2.0 text-unidecode==1.3 arrow==1.4.0 tzdata==2026.6
)
if $bitsandbytes; then
    packages+=(bitsandbytes==0.50.2)
fi
mkdir -p "$dir"
platforms=()
for tag in manylinux_2_28 manylinux_2_27 manylinux_2_24 manylinux_2_17 manylinux2014 manylinux1; do
    platforms+=(--platform "${tag}_x86_64")
done
"$python" -m pip download --no-deps --only-binary=:all: --python-version "${PYTHON_VERSION:-3.12}" --implementation cp \
    "${platforms[@]}" --disable-pip-version-check -q -d "$dir" "${packages[@]}"
ls -l "$dir"
du -sh "$dir"
