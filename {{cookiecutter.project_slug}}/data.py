"""Where the data comes from: local files or a hub dataset, as train and validation splits,
handed to the task (task.prepare_datasets) to become model inputs.
"""

import os
from pathlib import Path

import datasets

import task
from config import UsageError

# The datasets builder for each data file ending.
FILE_BUILDERS = {
{% for ending, builder in cookiecutter._data_files.items() %}
    {{ ending | tojson }}: {{ builder | tojson }},
{% endfor %}
}


def load_datasets(cfg, accelerator, tokenizer):
    """The task's train and validation datasets, and its label names (None if it has none)."""
    # The main process reads and tokenizes first; the others then read its cache.
    with accelerator.main_process_first():
        raw = load_raw_datasets(cfg, task.data_columns(cfg).values())
        train_set, eval_set, label_names = task.prepare_datasets(cfg, raw, tokenizer)
    for name, split in (("train", train_set), ("validation", eval_set)):
        if len(split) < accelerator.num_processes:
            count = f"{len(split)} sequences after tokenization"
            raise UsageError(f"The {name} split has {count}; too few to train.")
    return train_set, eval_set, label_names


def load_raw_datasets(cfg, columns):
    """A DatasetDict with train and validation splits holding the `columns` the task reads."""
    if cfg.dataset_name:
        source = cfg.dataset_name
        raw = load_or_explain(source, cfg.dataset_name, cfg.dataset_config_name)
    else:
        source = cfg.train_file
        files = {"train": cfg.train_file}
        if cfg.validation_file:
            files["validation"] = cfg.validation_file
        raw = load_or_explain(source, builder_for(files.values()), data_files=files)
    if len(raw["train"]) == 0:
        raise UsageError(f"The train split of {source} is empty.")
    if "validation" not in raw:
        # A held-out split carved from train, the same one on every run.
        percent = cfg.validation_split_percentage
        split = raw["train"].train_test_split(test_size=percent / 100, seed=cfg.seed)
        raw = datasets.DatasetDict(train=split["train"], validation=split["test"])
    for name, limit in (("train", cfg.max_train_samples), ("validation", cfg.max_eval_samples)):
        if limit is not None:
            raw[name] = raw[name].select(range(min(limit, len(raw[name]))))
    has = raw["train"].column_names
    for column in columns:
        if column not in has:
            raise UsageError(f"Column {column!r} is not in {source}; it has {has}.")
    return raw


def builder_for(paths):
    """The one datasets builder that reads all of `paths`."""
    for path in paths:
        if not os.access(path, os.R_OK):
            raise UsageError(f"Data file {path} does not exist or cannot be read.")
        if os.path.getsize(path) == 0:
            raise UsageError(f"Data file {path} is empty.")
    builders = {FILE_BUILDERS.get(Path(path).suffix) for path in paths}
    if None in builders or len(builders) > 1:
        endings = ", ".join(FILE_BUILDERS)
        raise UsageError(f"Data files must all end in one of {endings}, not mixed.")
    return builders.pop()


def load_or_explain(source, *args, **kwargs):
    try:
        return datasets.load_dataset(*args, **kwargs)
    except Exception as error:
        # The datasets library raises many kinds of errors; the user needs one line.
        reason = (str(error) or type(error).__name__).splitlines()[0]
        raise UsageError(f"Could not load data from {source}: {reason}") from error
