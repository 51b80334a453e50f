"""Where the data comes from: local files, folders of images or a hub dataset, as train and
validation splits, handed to the task (task.prepare_datasets) to become model inputs; or, with
streaming=true (causal-lm), a stream (streaming.py). `task` is your task module, passed in.

The datasets library and pyarrow are imported in the functions that use them: train.py imports
this module, and `--help` or a bad option should not wait for them (about half a second).
"""

import contextlib
import json
import math
import os

import torch

from trainkit.files import builder_for, load_or_explain
from trainkit.options import UsageError

# The fewest validation rows a carved split keeps where the data allows (validation_size).
VALIDATION_ROWS = 50


def load_datasets(cfg, accelerator, tokenizer, task):
    """The task's train and validation datasets, and its label names (None if it has none)."""
    if getattr(cfg, "streaming", False):  # an option of causal-lm's only
        from trainkit import streaming

        return streaming.load_datasets(cfg, accelerator, tokenizer, task)

    def prepare():
        try:
            raw = load_raw_datasets(cfg, task.data_columns(cfg), task.FILE_READERS)
            return task.prepare_datasets(cfg, raw, tokenizer)
        except Exception as error:
            full = full_cache(error)
            if full is None:
                raise
            raise full from error

    # The main process reads and tokenizes first, and the others then read its cache. They learn
    # whether it succeeded before going on, so a bad file stops every process with one message.
    problem = None
    if accelerator.is_main_process:
        try:
            prepared = prepare()
        except UsageError as error:
            problem = error
    failed = accelerator.reduce(torch.tensor(problem is not None, device=accelerator.device), "sum")
    if failed:
        raise problem or UsageError("The main process could not prepare the data.")
    if not accelerator.is_main_process:
        prepared = prepare()
    train_set, eval_set, label_names = prepared
    for name, split in (("train", train_set), ("validation", eval_set)):
        if len(split) < accelerator.num_processes:
            count = f"{len(split)} examples once prepared"
            raise UsageError(f"The {name} split has {count}; too few to train.")
    if lengths := token_counts(eval_set):
        # Evaluation goes longest first: batches of like lengths carry less padding (a third less
        # work on the bundled sample). No score depends on the order.
        eval_set = eval_set.select(sorted(range(len(lengths)), key=lambda i: -lengths[i]))
    sizes = f"{len(train_set)} training, {len(eval_set)} validation examples"
    labels = f"; labels {', '.join(map(str, label_names))}" if label_names else ""
    accelerator.print(f"Data: {sizes}{labels}.")
    return train_set, eval_set, label_names


def token_counts(rows):
    """Each row's tokens, over its columns of token ids (named *input_ids: dpo has two); [] for
    data without them (images, tables)."""
    columns = [rows[name] for name in rows.column_names if name.endswith("input_ids")]
    return [sum(map(len, sequences)) for sequences in zip(*columns, strict=True)]


def full_cache(error):
    """If `error` (or one it came from) is a write into the datasets cache that found its disk
    full, a UsageError that names the cache; else None."""
    import datasets

    causes = [error]
    while causes[-1].__cause__ or causes[-1].__context__:
        causes.append(causes[-1].__cause__ or causes[-1].__context__)
    said = " ".join(map(str, causes))
    if "No space left" not in said and "Not enough disk space" not in said:
        return None
    cache = datasets.config.HF_DATASETS_CACHE
    return UsageError(
        f"No space left on device for the datasets cache, {cache} ({said.splitlines()[0][:80]}); "
        "free space there, or set HF_DATASETS_CACHE to a disk with room, then run again."
    )


def load_raw_datasets(cfg, columns, readers):
    """Train and validation splits holding the `columns` ({option: column}) the task reads;
    `readers` ({ending: reader}) read the files the datasets library cannot."""
    import datasets

    if cfg.dataset_name:
        sources = {"train": f"dataset_name {cfg.dataset_name}"}
        try:
            raw = load_or_explain(
                sources["train"], datasets.load_dataset, cfg.dataset_name, cfg.dataset_config_name
            )
        except UsageError as error:  # a local path given as a hub name, often
            local = (
                "train_file or train_dir (a folder)" if hasattr(cfg, "train_dir") else "train_file"
            )
            raise UsageError(f"{str(error).rstrip('.')}; local data goes in {local}.") from None
    elif getattr(cfg, "train_dir", None):  # an option of image-classification's only
        from trainkit import images  # folders of images, one sub-folder per class

        sources = {"train": f"train_dir {cfg.train_dir}"}
        raw = images.read_image_folders(cfg)
    else:
        files = {"train": ("train_file", cfg.train_file)}
        if cfg.validation_file:
            files["validation"] = ("validation_file", cfg.validation_file)
        sources = {split: f"{option} {path}" for split, (option, path) in files.items()}
        raw = load_files(files, sources, readers)
    if len(raw["train"]) == 0:
        raise UsageError(f"The train split of {sources['train']} is empty.")
    named = {split: sources.get(split, f"{split} of {sources['train']}") for split in raw}
    raw = datasets.DatasetDict(
        {split: check_rows(cfg, rows, columns, named[split]) for split, rows in raw.items()}
    )
    if "validation" not in raw:
        # A held-out split carved from train, the same one on every run.
        size = validation_size(len(raw["train"]), cfg.validation_split_percentage)
        split = raw["train"].train_test_split(test_size=size, seed=cfg.seed)
        raw = datasets.DatasetDict(train=split["train"], validation=split["test"])
    for name, limit in (("train", cfg.max_train_samples), ("validation", cfg.max_eval_samples)):
        if limit is not None:
            raw[name] = raw[name].select(range(min(limit, len(raw[name]))))
    for split, rows in raw.items():
        for option, column in columns.items():
            if column not in rows.column_names:
                where = sources.get(split, sources["train"])
                has = rows.column_names
                raise UsageError(f"Column {column!r} ({option}) is not in {where}; it has {has}.")
    if "label_column_name" in columns:
        carved = f"{sources['train']} (the validation split carved from it)"
        validation = sources.get("validation", carved)
        raw["validation"] = check_labels(cfg, raw, columns["label_column_name"], validation)
    return raw


def validation_size(rows, percent):
    """Rows to hold out of `rows` for validation: `percent` of them, but at least 50 where a
    quarter of the data allows: 5% of a small table (9 of 178 rows) scores in steps of 11%."""
    return max(math.ceil(rows * percent / 100), min(VALIDATION_ROWS, rows // 4), 1)


def check_rows(cfg, rows, columns, source):
    """Rows where a column the task reads holds nothing (null, or blank text): an error naming
    the file and line, or with bad_rows=skip, dropped and counted on the console. Never dropped
    in silence."""
    import pyarrow as pa
    import pyarrow.compute as pc

    bad = set()
    for option, column in columns.items():
        if column not in rows.column_names:
            continue  # named after loading
        values = rows.data.column(column)
        empty = pc.is_null(values)
        if pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
            empty = pc.or_kleene(empty, pc.equal(pc.utf8_trim_whitespace(values), ""))
        found = pc.indices_nonzero(empty.fill_null(True)).to_pylist()
        if found and cfg.bad_rows == "error":
            raise UsageError(
                f"{source}, {where(source, found[0])}, has no {option} value "
                f"({column!r} is null or blank); fix it, or skip such rows with --bad_rows skip."
            )
        bad.update(found)
    if bad:
        shown = ", ".join(where(source, i) for i in sorted(bad)[:5])
        if os.environ.get("RANK", "0") == "0":  # once, not once per process
            print(f"Skipped {len(bad)} row(s) of {source} with a null or blank value: {shown}.")
        rows = rows.select(sorted(set(range(len(rows))) - bad))
    return rows


def check_labels(cfg, raw, column, source):
    """Validation rows whose label, or one of whose tags, no training row has: the model has no
    output for it. An error naming the file and line, or with bad_rows=skip, dropped and
    counted. A dataset's ClassLabel ids index its own names: nothing to check."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if "ClassLabel" in repr(raw["train"].features[column]):
        return raw["validation"]
    # Arrow arrays, through any selection (max_*_samples, the carved split).
    arrays = (raw[split].with_format("arrow")[column] for split in ("train", "validation"))
    train, validation = (array.combine_chunks() for array in arrays)
    try:  # e.g. a csv's large_string labels against a jsonl's string ones
        train = train.cast(validation.type)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        raise UsageError(
            f"Column {column!r} holds {train.type} values in the training data and "
            f"{validation.type} values in {source}; give both the same kind of labels."
        ) from None
    rows, labels = pa.array(range(len(validation))), validation
    if pa.types.is_list(validation.type) or pa.types.is_large_list(validation.type):  # tags
        rows, labels = pc.list_parent_indices(validation), pc.list_flatten(validation)
        train = pc.list_flatten(train)
    unseen = pc.invert(pc.is_in(labels, value_set=pc.unique(train)))
    bad = sorted(set(pc.filter(rows, unseen).to_pylist()))
    if not bad:
        return raw["validation"]
    found = pc.filter(labels, unseen).to_pylist()  # in row order: found[0] is in row bad[0]
    if cfg.bad_rows == "error":
        raise UsageError(
            f"{source}, {where(source, bad[0])}, has the label {found[0]!r} ({column!r}), which no "
            "training row has: the model would have no output for it. Fix it, or skip such rows "
            "with --bad_rows skip."
        )
    if os.environ.get("RANK", "0") == "0":  # once, not once per process
        names = ", ".join(map(repr, sorted(set(found), key=str)[:5]))
        print(f"Skipped {len(bad)} validation row(s) with labels no training row has: {names}.")
    return raw["validation"].select(sorted(set(range(len(validation))) - set(bad)))


def where(source, index):
    """Row `index` of a split as its place in the file: a line for jsonl (csv counts its
    header), else the row."""
    if source and source.endswith(".jsonl"):
        return f"line {index + 1}"
    if source and source.endswith(".csv"):
        return f"line {index + 2}"
    return f"row {index}"


def load_files(files, sources, readers):
    """{split: (option, path)} as a DatasetDict: in one datasets call when the files share a
    format (one builder to set up), else, or when that call fails, one file at a time, so that
    an error names the file and the option it came from."""
    import datasets

    builders = {
        split: builder_for(option, path, readers) for split, (option, path) in files.items()
    }
    if len(set(builders.values())) == 1 and isinstance(builders["train"], str):
        paths = {split: path for split, (_, path) in files.items()}
        with contextlib.suppress(Exception):
            return datasets.load_dataset(builders["train"], data_files=paths)
    raw = datasets.DatasetDict()
    for split, (_, path) in files.items():
        builder = builders[split]
        if isinstance(builder, str):
            try:
                loaded = load_or_explain(
                    sources[split], datasets.load_dataset, builder, data_files={split: path}
                )
            except UsageError:
                name_the_bad_line(path, sources[split])
                raise
            raw[split] = loaded[split]
        else:  # the task's own reader
            raw[split] = load_or_explain(sources[split], builder, path)
    return raw


def name_the_bad_line(path, source):
    """A JSON-lines file the datasets library could not read: the first line that is not JSON,
    named (the library says only that generating the dataset failed)."""
    if not path.endswith(".jsonl"):
        return
    with open(path, encoding="utf-8", errors="replace") as lines:
        for number, line in enumerate(lines, 1):
            try:
                json.loads(line) if line.strip() else None
            except ValueError as error:
                raise UsageError(f"{source}, line {number}, is not JSON: {error}.") from None
