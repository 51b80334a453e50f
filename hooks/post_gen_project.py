"""Lay the chosen task over the project, remove what the answers exclude, say what to run next.

Runs inside the generated project. Each task lives in the template as one folder,
tasks/<task>/, holding task.py (its data, model, loss and metrics, against the contract at the
top of that file), its tests and any files it needs (metric modules). The chosen folder is moved
into the project root and the rest removed, so the project holds one task and no dead code.

Self-contained on purpose: cookiecutter runs a hook as a standalone script, so it cannot import
sibling modules (cookiecutter #824). Optional directories are removed here because an empty
rendered directory name is an error in cookiecutter.
"""

import os
import shlex
import shutil
import sys

TASK = {{ cookiecutter.task | tojson }}
INCLUDE_CI = {{ cookiecutter.include_ci_workflow | tojson }} == "yes"


def move_tree(source, target):
    """Move every file below `source` to the same relative place below `target`."""
    for root, _, files in os.walk(source):
        destination = os.path.join(target, os.path.relpath(root, source))
        os.makedirs(destination, exist_ok=True)
        for name in files:
            os.replace(os.path.join(root, name), os.path.join(destination, name))


if __name__ == "__main__":
    if not os.path.isdir(os.path.join("tasks", TASK)):
        tasks = ", ".join(sorted(os.listdir("tasks")))
        print(f"The answer task={TASK!r} is not allowed; choose one of {tasks}.", file=sys.stderr)
        sys.exit(1)
    move_tree(os.path.join("tasks", TASK), ".")
    shutil.rmtree("tasks")
    for other in os.listdir("assets"):
        if other != TASK:
            shutil.rmtree(os.path.join("assets", other))
    if not INCLUDE_CI:
        shutil.rmtree(".github")
    print(
        f"\nCreated {os.getcwd()}\nNext steps:\n"
        f"  cd {shlex.quote(os.getcwd())}\n"
        "  pip install torch --index-url https://download.pytorch.org/whl/cpu  # or your CUDA build\n"
        '  pip install -e ".[dev]"\n'
        "  python train.py --config configs/debug.yaml   # a few updates in seconds, offline\n"
        "  python -m pytest                               # the project's tests\n"
    )
