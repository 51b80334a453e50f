"""streaming=true: the training data read as a stream (datasets' IterableDataset), for corpora
larger than the disk (a hub dataset) or the memory (local files); nothing is tokenized ahead.

Each process reads its own share of the rows (split_dataset_by_node), tokenizes and packs them
as it reads (task.tokenize_function, as for data on disk) and goes through them in order, pass
after pass, until max_steps. The stream is not shuffled: a shuffle buffer's content cannot be
saved, and exact resume needs it; shuffle a corpus once, when you write it. Each checkpoint
holds every process's place in its stream (stream_position_<process>.json), so a killed run
resumes at the same block. Validation comes from validation_file (or the hub dataset's
validation split), read in full: a stream cannot be split.
"""

import itertools
import json
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import datasets
import torch
from datasets.distributed import split_dataset_by_node
from torch.utils.data import DataLoader

from trainkit.files import builder_for, load_or_explain
from trainkit.options import UsageError


@dataclass
class Stream:
    """This process's training sequences and its place in them: the pass, and the state of the
    stream within it (None at a pass's start)."""

    sequences: datasets.IterableDataset
    position: dict


def check(cfg):
    """What streaming cannot do, refused before any data is read."""
    if cfg.max_steps == -1:
        raise UsageError("streaming=true trains by max_steps: a stream has no length in epochs.")
    if "epoch" in (cfg.eval_strategy, cfg.save_strategy):
        raise UsageError("streaming=true has no epochs: use eval_strategy and save_strategy steps.")
    if cfg.dataloader_num_workers:
        raise UsageError(
            "streaming=true reads in the training process, which keeps its place for resume: "
            "set dataloader_num_workers=0."
        )
    if not (cfg.validation_file or cfg.dataset_name):
        raise UsageError(
            "streaming=true needs a validation_file: a stream cannot be split into train and "
            "validation."
        )


def load_datasets(cfg, accelerator, tokenizer, task):
    """(this process's Stream of training sequences, the validation set, None): what
    data.load_datasets returns for data on disk. Checkpoints keep the Stream's position. `task`
    is causal-lm's task.py: its tokenize_function tokenizes and packs."""
    check(cfg)
    if cfg.dataset_name:
        source = f"dataset_name {cfg.dataset_name}"
        load = {"path": cfg.dataset_name, "name": cfg.dataset_config_name}
    else:
        source = f"train_file {cfg.train_file}"
        load = {
            "path": builder_for("train_file", cfg.train_file, task.FILE_READERS),
            "data_files": cfg.train_file,
        }
    rows = load_or_explain(source, datasets.load_dataset, **load, split="train", streaming=True)
    if cfg.max_train_samples is not None:
        rows = rows.take(cfg.max_train_samples)
    # The first row, read now: a missing column or an unreadable file stops the run here.
    first = load_or_explain(source, next, iter(rows), None)
    if first is None or cfg.text_column_name not in first:
        has = list(first or [])
        raise UsageError(f"Column {cfg.text_column_name!r} is not in {source}; it has {has}.")
    share = split_dataset_by_node(rows, accelerator.process_index, accelerator.num_processes)
    sequences = share.map(
        task.tokenize_function(cfg, tokenizer), batched=True, remove_columns=list(first)
    )
    stream = Stream(sequences, {"pass": 0, "state": None})
    keep_position_in_checkpoints(stream, accelerator)
    eval_set = validation_set(cfg, tokenizer, task)
    if len(eval_set) < accelerator.num_processes:
        raise UsageError(f"The validation split has {len(eval_set)} sequences; too few.")
    accelerator.print(f"Data: streaming {source}; {len(eval_set)} validation sequences.")
    return stream, eval_set, None


def validation_set(cfg, tokenizer, task):
    """The validation rows, tokenized as training's: validation_file, else the first
    max_eval_samples (default 1,000) rows of the hub dataset's validation split."""
    if cfg.validation_file:
        source = f"validation_file {cfg.validation_file}"
        builder = builder_for("validation_file", cfg.validation_file, task.FILE_READERS)
        load = {"path": builder, "data_files": cfg.validation_file, "split": "train"}
        rows = load_or_explain(source, datasets.load_dataset, **load)
        if cfg.max_eval_samples is not None:
            rows = rows.select(range(min(cfg.max_eval_samples, len(rows))))
    else:
        source = f"the validation split of dataset_name {cfg.dataset_name}"
        load = {"path": cfg.dataset_name, "name": cfg.dataset_config_name, "split": "validation"}
        stream = load_or_explain(source, datasets.load_dataset, **load, streaming=True)
        taken = stream.take(cfg.max_eval_samples or 1000)
        rows = load_or_explain(source, datasets.Dataset.from_list, list(taken))
    if cfg.text_column_name not in rows.column_names:
        has = rows.column_names
        raise UsageError(f"Column {cfg.text_column_name!r} is not in {source}; it has {has}.")
    tokenize = task.tokenize_function(cfg, tokenizer)
    return rows.map(tokenize, batched=True, remove_columns=rows.column_names)


def keep_position_in_checkpoints(stream, accelerator):
    """Every process writes its place in its stream into each checkpoint and reads it back on
    resume, through Accelerate's save_state and load_state hooks (they run on every process)."""
    rank, world = accelerator.process_index, accelerator.num_processes

    def save(models, weights, directory):
        Path(directory, f"stream_position_{rank}.json").write_text(json.dumps(stream.position))

    def load(models, directory):
        saved = len(list(Path(directory).glob("stream_position_*.json")))
        if saved != world:
            raise UsageError(
                f"it holds the stream positions of {saved} processes, not {world}: resume a "
                "streamed run with streaming=true on as many processes as it ran on."
            )
        stream.position = json.loads(Path(directory, f"stream_position_{rank}.json").read_text())

    accelerator.register_save_state_pre_hook(save)
    accelerator.register_load_state_pre_hook(load)


def update_windows(stream, state, cfg, accelerator, options):
    """batching.update_windows for a Stream: the micro-batches of each update, k at a time,
    pass after pass. A process whose share ends starts its next pass by itself: every window is
    full, so processes never wait on each other for data. Yields (micro-batches, pass, False)."""
    micro_batches = endless_micro_batches(stream, cfg, options)
    while state.global_step < state.total_updates:
        window = list(itertools.islice(micro_batches, cfg.gradient_accumulation_steps))
        yield window, stream.position["pass"], False


def endless_micro_batches(stream, cfg, options):
    """Micro-batches from the stream's position on; after each, the position is the stream's
    state, so a checkpoint taken after any update resumes at the next micro-batch."""
    loading = {**options, "collate_fn": partial(options["collate_fn"], epoch=0)}
    while True:
        # A saved state applies to the pass it was saved in (datasets compares the epoch).
        stream.sequences.set_epoch(stream.position["pass"])
        if stream.position["state"] is not None:
            stream.sequences.load_state_dict(stream.position["state"])
        # Reads in this process, in order (no workers, no prefetch): the state after a batch is
        # the state after its last sequence. A share's last, short batch is dropped. The loader
        # gets its own generator: drawing from the global RNG would shift dropout on resume.
        loader = DataLoader(
            stream.sequences,
            batch_size=cfg.per_device_train_batch_size,
            drop_last=True,
            generator=torch.Generator().manual_seed(cfg.data_seed),
            **loading,
        )
        for batch in loader:
            stream.position["state"] = stream.sequences.state_dict()
            yield batch
        stream.position = {"pass": stream.position["pass"] + 1, "state": None}
