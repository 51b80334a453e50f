"""Validate the answers before any file is written.

A bad answer stops generation with one plain sentence on stderr and exit status 1; cookiecutter
then removes the half-written project directory. Self-contained on purpose: cookiecutter runs a
hook as a standalone script, so it cannot import sibling modules (cookiecutter #824).

Every answer reaches this script through Jinja's `tojson`, the same filter the template uses to
put answers into Python and TOML, so no answer can break out of its string literal here either.
The script runs inside the new project directory, which is where train.py will later run.
"""

import keyword
import os
import re
import sys
import unicodedata

ANSWERS = {
    "project_name": {{ cookiecutter.project_name | tojson }},
    "project_slug": {{ cookiecutter.project_slug | tojson }},
    "description": {{ cookiecutter.description | tojson }},
    "author": {{ cookiecutter.author | tojson }},
    "task": {{ cookiecutter.task | tojson }},
    "model": {{ cookiecutter.model | tojson }},
    "dataset": {{ cookiecutter.dataset | tojson }},
    "mixed_precision": {{ cookiecutter.mixed_precision | tojson }},
    "tracker": {{ cookiecutter.tracker | tojson }},
    "include_ci_workflow": {{ cookiecutter.include_ci_workflow | tojson }},
}

# Repeated from cookiecutter.json (tests/test_structure.py checks they agree): a replay file or a
# hand-edited context can hold anything, and an unknown task would fail while files render.
CHOICES = {
    "task": (
        "causal-lm", "custom", "dpo", "image-classification", "seq2seq", "sft",
        "text-classification", "token-classification",
    ),  # fmt: skip
    "mixed_precision": ("no", "bf16", "fp16"),
    "tracker": ("none", "tensorboard", "wandb", "mlflow", "trackio"),
    "include_ci_workflow": ("yes", "no"),
}
SLUG = re.compile(r"[a-z_][a-z0-9_]*")
HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?")
# The data file endings train.py reads, from cookiecutter.json.
DATA_EXTENSIONS = tuple({{ cookiecutter._data_files | tojson }})
# Endings that mean "a file", so such an answer is never taken for a hub dataset name.
OTHER_FILE_EXTENSIONS = (
    ".tsv", ".xls", ".xlsx", ".ods", ".gz", ".bz2", ".xz", ".zst", ".zip", ".tar", ".tgz", ".7z",
    ".arrow", ".feather", ".orc", ".avro", ".xml", ".html", ".md", ".yaml", ".yml", ".pkl",
    ".pickle", ".npy", ".npz", ".h5", ".hdf5", ".db", ".sqlite", ".tfrecord", ".jsonl.gz",
)


def has_control_character(text):
    """Line breaks, tabs, NUL and the like: they have no place in a one-line answer."""
    return any(unicodedata.category(char) in ("Cc", "Zl", "Zp") for char in text)


def looks_like_path(text):
    return text.startswith(("/", ".", "~")) or "\\" in text or text.count("/") > 1


def problem(answers):
    """The one sentence that explains the first bad answer, or None when all are good."""
    for name in ("project_name", "description", "author", "project_slug", "model", "dataset"):
        if has_control_character(answers[name]):
            return (
                f"The answer {name}={answers[name]!r} contains a line break or another control "
                "character; give it as one line of plain text."
            )
    for name, allowed in CHOICES.items():
        if answers[name] not in allowed:
            return f"The answer {name}={answers[name]!r} is not allowed; choose one of {', '.join(allowed)}."

    if not answers["project_name"].strip():
        return "The answer project_name is empty; give the project a human-readable name."

    slug = answers["project_slug"]
    if not SLUG.fullmatch(slug) or keyword.iskeyword(slug):
        return (
            f"The answer project_slug={slug!r} is not a usable Python package name; use lowercase "
            "letters, digits and underscores, not starting with a digit and not a Python keyword "
            "(for example project_slug=my_trainer)."
        )

    model = answers["model"]
    if model != "tiny" and not HUB_ID.fullmatch(model) and not os.path.isdir(model):
        return (
            f"The answer model={model!r} is not 'tiny', a hub id such as gpt2 or org/name, or an "
            "existing local directory (a relative path counts from the generated project's "
            "directory, so prefer an absolute path)."
        )

    dataset = answers["dataset"]
    lowered = dataset.lower()
    if dataset.startswith("~"):
        return f"The answer dataset={dataset!r} starts with ~, which train.py does not expand; write the path out."
    if dataset == "sample" or dataset.endswith(DATA_EXTENSIONS):
        return None
    # A folder that exists is local, never a hub name (imgs/train looks like org/name); a
    # relative path counts from the folder the project is created in, this one's parent.
    folder = dataset if os.path.isabs(dataset) else os.path.join("..", dataset)
    if os.path.isdir(folder):
        if answers["task"] != "image-classification":
            return (
                f"The answer dataset={dataset!r} is a folder; only task=image-classification reads "
                f"folders (one sub-folder of images per class). Give a data file ending in "
                f"{', '.join(DATA_EXTENSIONS)}, a hub dataset name, or 'sample'."
            )
        return None
    if lowered.endswith(DATA_EXTENSIONS) or lowered.endswith(OTHER_FILE_EXTENSIONS) or looks_like_path(dataset):
        return (
            f"The answer dataset={dataset!r} is not a usable data file or folder; a local file must end "
            f"in {', '.join(DATA_EXTENSIONS)} (lowercase), a folder (image-classification: one "
            "sub-folder of images per class) must exist; otherwise give 'sample' or a hub dataset name."
        )
    if "/" in dataset:  # a hub name such as org/name, or a path that does not exist
        where = os.path.abspath("..")
        print(
            f"Note: no file or folder {dataset} in {where}; dataset={dataset!r} is taken as a hub "
            "dataset name. A local one goes by its path from there, or an absolute path."
        )
    if not HUB_ID.fullmatch(dataset):
        return (
            f"The answer dataset={dataset!r} is not 'sample', a hub dataset name such as imdb or "
            f"org/name, or a local file ending in {', '.join(DATA_EXTENSIONS)}."
        )
    return None


if __name__ == "__main__":
    message = problem(ANSWERS)
    if message:
        print(message, file=sys.stderr)
        sys.exit(1)
