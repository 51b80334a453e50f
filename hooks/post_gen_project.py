"""Remove what the answers exclude, then say what to run next.

Runs inside the generated project. Self-contained on purpose: cookiecutter runs a hook as a
standalone script, so it cannot import sibling modules (cookiecutter #824). Optional directories
are removed here because an empty rendered directory name is an error in cookiecutter.
"""

import os
import shlex
import shutil

TASK = {{ cookiecutter.task | tojson }}
INCLUDE_CI = {{ cookiecutter.include_ci_workflow | tojson }} == "yes"
TASKS = ("causal-lm", "text-classification")


def remove(path):
    if os.path.isdir(path):
        shutil.rmtree(path)
    elif os.path.exists(path):
        os.remove(path)


if __name__ == "__main__":
    for other in TASKS:
        if other != TASK:
            remove(os.path.join("assets", other))
    if TASK == "causal-lm":
        remove("metrics")  # accuracy and f1 are classification metrics
    if not INCLUDE_CI:
        remove(".github")
    print(
        f"\nCreated {os.getcwd()}\nNext steps:\n"
        f"  cd {shlex.quote(os.getcwd())}\n"
        "  pip install torch --index-url https://download.pytorch.org/whl/cpu  # or your CUDA build\n"
        '  pip install -e ".[dev]"\n'
        "  python train.py --config configs/debug.yaml   # a few updates in seconds, offline\n"
        "  python -m pytest                               # the project's tests\n"
    )
