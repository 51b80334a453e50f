"""Lay the chosen task over the project, fit it to the user's answers and data, remove what the
answers exclude, and say what to run next.

Runs inside the generated project. Each task lives in the template as one folder,
tasks/<task>/, holding task.py (its data, model, loss and metrics, against the contract at the
top of that file), its tests, the kit modules only it needs (under trainkit/) and any file of
its own (model.py). The chosen folder is merged into the project root and the rest
removed; what several tasks share (trainkit/pretrained.py, trainkit/lm_loss.py, chat.py, the
metric modules under metrics/) stays only where task.py uses it, so the project holds one task
and no dead code. The task's assets/<task>/ becomes assets/, the path config.py names.

The answers come from the project's .cookiecutter.json, not from Jinja, so this file is plain
Python that lints as it stands. They become the defaults of config.py's options (model, data,
mixed precision, tracker): config.py in the template holds the bundled tiny model and sample,
and this hook replaces a default only where an answer differs. A local data file (the `dataset`
answer) must exist; a relative path counts from the folder the project is created in. Its header
decides the default text and label columns (answers text_column and label_column, 'auto' to
detect), written into task.py's options.

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

with open(".cookiecutter.json", encoding="utf-8") as answers_file:
    ANSWERS = json.load(answers_file)
TASK = ANSWERS["task"]
INCLUDE_CI = ANSWERS["include_ci_workflow"] == "yes"
DATASET = ANSWERS["dataset"]
DATA_EXTENSIONS = tuple(ANSWERS["_data_files"])
# Column names that usually hold the text, and the labels; the first one present is taken.
TEXT_NAMES = (
    "text",
    "sentence",
    "content",
    "review",
    "document",
    "body",
    "comment",
    "tweet",
    "question",
    "prompt",
    "input",
    "utterance",
    "description",
    "title",
    "tokens",
    "words",
)
LABEL_NAMES = (
    "label",
    "labels",
    "class",
    "category",
    "sentiment",
    "target",
    "y",
    "stars",
    "rating",
    "intent",
    "topic",
    "tag",
    "ner_tags",
    "tags",
    "pos_tags",
    "chunk_tags",
    "summary",
    "highlights",
    "abstract",
    "headline",
    "translation",
)
SOURCE_NAMES = ("document", "article", "source", "text", "input", "content", "dialogue")
IMAGE_NAMES = ("image", "img", "picture", "photo", "image_path", "path", "file", "filename")
# Which task option each answer sets (seq2seq names them as run_summarization.py does); a task
# without the option ignores the answer.
OPTIONS = {
    "text_column": [
        ("text_column_name", TEXT_NAMES, "text"),
        ("text_column", SOURCE_NAMES, "source text"),
        ("image_column_name", IMAGE_NAMES, "images"),
    ],
    "label_column": [("label_column_name", LABEL_NAMES, "labels"), ("summary_column", LABEL_NAMES, "target text")],
}


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
    """Shared modules stay only where task.py imports them: trainkit/pretrained.py (transformers
    models), trainkit/lm_loss.py (language models' loss), chat.py (sft, dpo), and the metric
    modules under metrics/ that its options name."""
    with open("task.py", encoding="utf-8") as stream:
        source = stream.read()
    if not re.search(r"^import chat$", source, re.MULTILINE):
        os.remove("chat.py")
    for module in ("pretrained", "lm_loss"):
        if not re.search(rf"^from trainkit import [\w, ]*\b{module}\b", source, re.MULTILINE):
            os.remove(os.path.join("trainkit", f"{module}.py"))
            if os.path.exists(f"tests/test_{module}.py"):
                os.remove(f"tests/test_{module}.py")
    for name in os.listdir("metrics"):
        if f'"metrics/{name}"' not in source:
            shutil.rmtree(os.path.join("metrics", name))
    if not os.listdir("metrics"):
        os.rmdir("metrics")


def set_default(source, option, value):
    """`source` (config.py or task.py) with the default of `option` replaced by the literal
    `value`."""
    declaration = re.compile(rf"(\n    {option}: [^\n]*= option\(\s*)([^,\n]+),")
    if not declaration.search(source):
        stop(f"The template declares no option {option}; it is broken.")
    literal = "None" if value is None else json.dumps(value)  # JSON strings are Python's too
    return declaration.sub(lambda match: match.group(1) + literal + ",", source, count=1)


def write_answers_into_config():
    """The answers that differ from the bundled tiny model and sample, as config.py's defaults.
    A relative data file counts from the folder the project was created in: its parent."""
    with open("config.py", encoding="utf-8") as stream:
        source = stream.read()
    if ANSWERS["model"] != "tiny":
        source = set_default(source, "model_name_or_path", ANSWERS["model"])
    if DATASET != "sample":
        source = set_default(source, "validation_file", None)
        path = DATASET if os.path.isabs(DATASET) else "../" + DATASET
        if DATASET.endswith(DATA_EXTENSIONS):
            source = set_default(source, "train_file", path)
        elif os.path.isdir(path):  # image-classification's class folders (pre_gen_project.py)
            source = set_default(source, "train_file", None)
            write_image_folders(path)
        else:
            source = set_default(source, "train_file", None)
            source = set_default(source, "dataset_name", DATASET)
    source = set_default(source, "mixed_precision", ANSWERS["mixed_precision"])
    source = set_default(source, "report_to", ANSWERS["tracker"])
    with open("config.py", "w", encoding="utf-8") as stream:
        stream.write(source)


def write_image_folders(path):
    """A folder of class folders as task.py's train_dir, and a sibling validation folder (val,
    validation, valid or test, beside it or beside its parent's train/) as validation_dir."""
    with open("task.py", encoding="utf-8") as stream:
        source = set_default(stream.read(), "train_dir", path.rstrip("/"))
    parent = os.path.dirname(path.rstrip("/"))
    siblings = [os.path.join(parent, name) for name in ("val", "validation", "valid", "test")]
    validation = next((folder for folder in siblings if os.path.isdir(folder)), None)
    if validation:
        source = set_default(source, "validation_dir", validation)
        print(f"Images: train_dir {path}, validation_dir {validation}")
    else:
        print(f"Images: train_dir {path}; a validation split is held out of it")
    with open("task.py", "w", encoding="utf-8") as stream:
        stream.write(source)


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
    TASKS = os.listdir("tasks")
    move_tree(os.path.join("tasks", TASK), ".")
    shutil.rmtree("tasks")
    remove_what_the_task_does_not_use()
    move_tree(os.path.join("assets", TASK), "assets")
    for folder in TASKS:
        shutil.rmtree(os.path.join("assets", folder))
    if not INCLUDE_CI:
        shutil.rmtree(".github")
    write_answers_into_config()
    fit_task_to_data()
    print(
        f"\nCreated {os.getcwd()}\nNext steps:\n"
        f"  cd {shlex.quote(os.getcwd())}\n"
        "  pip install torch --index-url https://download.pytorch.org/whl/cpu  # or your CUDA build\n"
        '  pip install -e ".[dev]"\n'
        "  python train.py --config configs/debug.yaml   # a few updates in seconds, offline\n"
        "  python -m pytest                               # the project's tests\n"
    )
