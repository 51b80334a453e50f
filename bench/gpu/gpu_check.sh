#!/usr/bin/env bash
# The GPU check (issue 15, part 5): the generated causal-lm project on one NVIDIA GPU, under 8
# minutes. Writes gpu-check.md (the report), gpu-check.json (the figures) and gpu-check.log (every
# process's output) to --out (default: $OUT if set, else build/gpu-check). bench/gpu/README.md
# says what each part checks and how to run it on the device machine.
#
#   bash bench/gpu/gpu_check.sh --wheels build/gpu-wheels          # on the GPU machine
#   bash bench/gpu/gpu_check.sh --cpu                              # tiny sizes on a CPU (logic only)
#
# Options (the rest go to gpu_check.py: --budget S, --parts a,b,c,d, --no-compile,
# --no-trainer-compile, --peak-tflops T, --project DIR):
#   --wheels DIR   install DIR/*.whl first (pip --no-index --no-deps --target WORK/site, then on
#                  PYTHONPATH): datasets and the packages the machine lacks, filled here by
#                  bench/gpu/fetch_wheels.sh
#   --out DIR      where the report goes (default $OUT, else build/gpu-check)
#   --work DIR     scratch space: project, models, runs, caches (default /tmp/gpu-check-work)
#   --python EXE   the interpreter that has torch (default: $PYTHON, else python3)
#   --cpu          CPU mode
set -euo pipefail

export GPU_CHECK_COMMAND="bash bench/gpu/gpu_check.sh $*"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
python="${PYTHON:-python3}"
wheels=""
out="${OUT:-}"
work=""
rest=()
while [ $# -gt 0 ]; do
    case "$1" in
        --wheels | --out | --work | --python)
            [ $# -ge 2 ] || { echo "error: $1 needs a value" >&2; exit 2; }
            case "$1" in
                --wheels) wheels="$2" ;;
                --out) out="$2" ;;
                --work) work="$2" ;;
                --python) python="$2" ;;
            esac
            shift 2
            ;;
        -h | --help)
            sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
            exit 0
            ;;
        *)
            rest+=("$1")
            shift
            ;;
    esac
done
out="${out:-$repo/build/gpu-check}"
work="${work:-${TMPDIR:-/tmp}/gpu-check-work}"
mkdir -p "$out" "$work"
started=$(date +%s)

if [ -n "$wheels" ]; then
    [ -d "$wheels" ] || { echo "error: --wheels $wheels is not a directory (bench/gpu/fetch_wheels.sh fills one)" >&2; exit 2; }
    shopt -s nullglob
    files=("$wheels"/*.whl)
    shopt -u nullglob
    if [ ${#files[@]} -gt 0 ]; then
        echo "installing ${#files[@]} wheel(s) from $wheels into $work/site"
        "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
            --disable-pip-version-check --target "$work/site" "${files[@]}"
        export PYTHONPATH="$work/site${PYTHONPATH:+:$PYTHONPATH}"
        GPU_CHECK_WHEELS="$(cd "$wheels" && ls -- *.whl | tr '\n' ' ')"
        export GPU_CHECK_WHEELS
    fi
fi

# What every part needs; cookiecutter only to bake the project (--project DIR names a baked one).
missing=$("$python" - "${rest[@]+"${rest[@]}"}" <<'EOF'
import importlib.util
import sys

names = ["torch", "transformers", "accelerate", "peft", "datasets", "safetensors", "yaml", "tqdm"]
if "--project" not in sys.argv:
    names.append("cookiecutter")
print(" ".join(name for name in names if importlib.util.find_spec(name) is None))
EOF
)
if [ -n "$missing" ]; then
    echo "error: $python lacks: $missing. Fill a folder with bench/gpu/fetch_wheels.sh where PyPI is" \
        "reachable and pass it as --wheels DIR (bench/gpu/README.md)." >&2
    exit 2
fi
# datasets is carried for a machine whose pyarrow, fsspec and huggingface_hub it did not choose:
# a JSON file through load_dataset says at once whether they work together.
printf '{"text": "a"}\n{"text": "b"}\n' >"$work/smoke.jsonl"
if ! HF_DATASETS_CACHE="$work/smoke-cache" HF_DATASETS_OFFLINE=1 "$python" -c \
    "import datasets, sys; assert len(datasets.load_dataset('json', data_files=sys.argv[1])['train']) == 2" \
    "$work/smoke.jsonl" >"$work/smoke.log" 2>&1; then
    echo "error: datasets cannot read a JSON file here:" >&2
    tail -n 5 "$work/smoke.log" >&2
    "$python" -c "import importlib.metadata as m
for n in ('datasets', 'pyarrow', 'fsspec', 'huggingface_hub', 'dill', 'multiprocess'):
    try: print(n, m.version(n))
    except m.PackageNotFoundError: print(n, 'absent')" >&2 || true
    exit 2
fi
echo "setup: $(($(date +%s) - started)) s"

cd "$repo"
status=0
"$python" "$here/gpu_check.py" --out "$out" --work "$work" "${rest[@]+"${rest[@]}"}" || status=$?
echo "gpu_check.sh: $(($(date +%s) - started)) s in all; report: $out/gpu-check.md (exit status $status)"
exit "$status"
