"""Lay the chosen task over the project, fit it to the user's data, remove what the answers
exclude, and say what to run next.

Runs inside the generated project. Each task lives in the template as one folder,
tasks/<task>/, holding task.py (its data, model, loss and metrics, against the contract at the
top of that file), its tests and any files only it needs. The chosen folder is moved into the
project root and the rest removed; what several tasks share (pretrained.py, lm_loss.py, the
metric modules under metrics/) stays only where task.py uses it, so the project holds one task
and no dead code.

A local data file (the `dataset` answer) must exist; a relative path counts from the folder the
project is created in. Its header decides the default text and label columns (answers
text_column and label_column, 'auto' to detect), written into task.py's options.

Self-contained on purpose: cookiecutter runs a hook as a standalone script, so it cannot import
sibling modules (cookiecutter #824). Optional directories are removed here because an empty
rendered directory name is an error in cookiecutter. A problem stops generation with one
sentence and exit status 1; cookiecutter then removes the project directory.
"""

import csv
import json
import os
import re
import shlex
import shutil
import sys

TASK = {{ cookiecutter.task | tojson }}
INCLUDE_CI = {{ cookiecutter.include_ci_workflow | tojson }} == "yes"
DATASET = {{ cookiecutter.dataset | tojson }}
ANSWERS = {
    "text_column": {{ cookiecutter.text_column | tojson }},
    "label_column": {{ cookiecutter.label_column | tojson }},
}
DATA_EXTENSIONS = tuple({{ cookiecutter._data_files | tojson }})
# Column names that usually hold the text, and the labels; the first one present is taken.
TEXT_NAMES = ("text", "sentence", "content", "review", "document", "body", "comment", "tweet",
              "question", "prompt", "input", "utterance", "description", "title", "tokens", "words")
LABEL_NAMES = ("label", "labels", "class", "category", "sentiment", "target", "y", "stars",
               "rating", "intent", "topic", "tag", "ner_tags", "tags", "pos_tags", "chunk_tags",
               "summary", "highlights", "abstract", "headline", "translation")
SOURCE_NAMES = ("document", "article", "source", "text", "input", "content", "dialogue")
IMAGE_NAMES = ("image", "img", "picture", "photo", "image_path", "path", "file", "filename")
# Which task option each answer sets (seq2seq names them as run_summarization.py does); a task
# without the option ignores the answer.
OPTIONS = {"text_column": [("text_column_name", TEXT_NAMES, "text"),
                           ("text_column", SOURCE_NAMES, "source text"),
                           ("image_column_name", IMAGE_NAMES, "images")],
           "label_column": [("label_column_name", LABEL_NAMES, "labels"),
                            ("summary_column", LABEL_NAMES, "target text")]}


def stop(sentence):
    print(sentence, file=sys.stderr)
    sys.exit(1)


def move_tree(source, target):
    """Move every file below `source` to the same relative place below `target`."""
    for root, _, files in os.walk(source):
        destination = os.path.join(target, os.path.relpath(root, source))
        os.makedirs(destination, exist_ok=True)
        for name in files:
            os.replace(os.path.join(root, name), os.path.join(destination, name))


def file_columns(path):
    """The column names of a local data file; None where this hook cannot read them."""
    extension = os.path.splitext(path)[1]
    if extension == ".txt":
        return ["text"]
    try:
        with open(path, newline="", encoding="utf-8") as stream:
            if extension == ".csv":
                return next(csv.reader(stream), [])
            if extension == ".jsonl":
                row = json.loads(next((line for line in stream if line.strip()), "{}"))
            elif extension == ".json":
                data = json.load(stream)
                row = data[0] if isinstance(data, list) and data else data
            else:
                return None
    except (OSError, UnicodeDecodeError, ValueError):
        stop(f"The answer dataset={DATASET!r} is not a readable {extension} file.")
    return list(row) if isinstance(row, dict) else None


def choose_column(question, columns, names, what):
    """The column answered to `question`, checked against the file's columns, or the first
    usual name."""
    answer = ANSWERS[question]
    if answer != "auto":
        if columns is not None and answer not in columns:
            stop(f"The column {answer!r} is not in {DATASET}; it has {', '.join(columns)}.")
        return answer
    if columns is None:
        return None
    lowered = {column.lower(): column for column in columns}
    found = next((lowered[name] for name in names if name in lowered), None)
    if found is None:
        stop(
            f"Could not tell which column of {DATASET} holds the {what} (it has "
            f"{', '.join(columns)}); answer {question}=<one of them>."
        )
    return found


def remove_what_the_task_does_not_use():
    """Shared modules stay only where task.py or train.py uses them: pretrained.py (transformers
    models), lm_loss.py (language models' loss), streaming.py (causal-lm's streaming=true) and
    the metric modules under metrics/ that its options name."""
    with open("task.py", encoding="utf-8") as stream, open("train.py", encoding="utf-8") as loop:
        source = stream.read() + loop.read()
    for module in ("pretrained", "lm_loss", "streaming"):
        if f"import {module}\n" not in source:
            os.remove(f"{module}.py")
            if os.path.exists(f"tests/test_{module}.py"):
                os.remove(f"tests/test_{module}.py")
    for name in os.listdir("metrics"):
        if f'"metrics/{name}"' not in source:
            shutil.rmtree(os.path.join("metrics", name))
    if not os.listdir("metrics"):
        os.rmdir("metrics")


def fit_task_to_data():
    """Default columns of task.py's options from the data file, or from the answers."""
    columns = None
    if DATASET != "sample" and DATASET.endswith(DATA_EXTENSIONS):
        # A relative path counts from the folder the project is created in: its parent.
        path = DATASET if os.path.isabs(DATASET) else os.path.join("..", DATASET)
        if not os.path.isfile(path):
            where = os.path.abspath(os.path.dirname(path) or ".")
            stop(f"The answer dataset={DATASET!r} is not a file (looked in {where}).")
        columns = file_columns(path)
    with open("task.py", encoding="utf-8") as stream:
        source = stream.read()
    for answer, options in OPTIONS.items():
        for option, names, what in options:
            declaration = re.compile(rf'(\n    {option}: str = option\(\s*)("[^"\n]*")')
            if not declaration.search(source):
                continue
            column = choose_column(answer, columns, names, what)
            if column is not None:
                source = declaration.sub(lambda match, name=column: match.group(1) + json.dumps(name), source)
                print(f"The {what} column: {column!r} ({option})")
    with open("task.py", "w", encoding="utf-8") as stream:
        stream.write(source)


if __name__ == "__main__":
    if not os.path.isdir(os.path.join("tasks", TASK)):
        tasks = ", ".join(sorted(os.listdir("tasks")))
        stop(f"The answer task={TASK!r} is not allowed; choose one of {tasks}.")
    move_tree(os.path.join("tasks", TASK), ".")
    shutil.rmtree("tasks")
    remove_what_the_task_does_not_use()
    for other in os.listdir("assets"):
        if other != TASK:
            shutil.rmtree(os.path.join("assets", other))
    if not INCLUDE_CI:
        shutil.rmtree(".github")
    fit_task_to_data()
    print(
        f"\nCreated {os.getcwd()}\nNext steps:\n"
        f"  cd {shlex.quote(os.getcwd())}\n"
        "  pip install torch --index-url https://download.pytorch.org/whl/cpu  # or your CUDA build\n"
        '  pip install -e ".[dev]"\n'
        "  python train.py --config configs/debug.yaml   # a few updates in seconds, offline\n"
        "  python -m pytest                               # the project's tests\n"
    )
