"""Which samples each process trains on at each update: the order that keeps accumulation,
process count and resume exact (README, "Guarantees"). train.py counts updates with
epoch_micro_batches and trains on what update_windows yields.
"""

import itertools
from functools import partial

import torch
from torch.utils.data import DataLoader


def epoch_micro_batches(num_samples, epoch, cfg, num_processes, process_index):
    """This process's micro-batches (lists of sample indices) for one epoch.

    All processes draw one permutation from (data_seed, epoch), cut it into global micro-batches
    of batch size * num_processes and take every num_processes-th sample: 1 process with batch 2B
    sees what 2 processes with batch B see together, and resume skips batches by index. A last
    global batch smaller than the process count is dropped (each process needs a sample)."""
    generator = torch.Generator().manual_seed(cfg.data_seed + epoch)
    order = torch.randperm(num_samples, generator=generator)
    size = cfg.per_device_train_batch_size * num_processes
    batches = [order[start : start + size].tolist() for start in range(0, num_samples, size)]
    if len(batches[-1]) < num_processes:
        batches.pop()
    return [batch[process_index::num_processes] for batch in batches]


def update_windows(train_set, state, cfg, accelerator, options):
    """The micro-batches of each update, k at a time (an epoch's last window may hold fewer),
    epoch after epoch from the position in `state`, which it advances. Yields (micro-batches,
    fractional epoch, whether the window ends an epoch); the caller stops after the last update.
    A stream (streaming=true, causal-lm) makes its own windows, pass after pass."""
    if getattr(cfg, "streaming", False):
        from trainkit import streaming

        yield from streaming.update_windows(train_set, state, cfg, accelerator, options)
        return
    world, rank = accelerator.num_processes, accelerator.process_index
    while state.global_step < state.total_updates:
        batches = epoch_micro_batches(len(train_set), state.epoch, cfg, world, rank)
        if state.batches_done >= len(batches):
            # Resumed on a process count whose epoch is shorter (its last global batch, too small
            # to split, dropped): this epoch is done.
            state.epoch, state.batches_done = state.epoch + 1, 0
            continue
        # Resume skips the batches already done by index: no data is loaded to be thrown away.
        # The loader gets its own generator: drawing from the global RNG would shift dropout.
        generator = torch.Generator().manual_seed(cfg.data_seed + state.epoch)
        remaining = batches[state.batches_done :]
        # Training batches get their epoch: augmentation draws from (data_seed, epoch, sample
        # index), so resume repeats it. Evaluation's epoch is None: no augmentation.
        loading = {**options, "collate_fn": partial(options["collate_fn"], epoch=state.epoch)}
        loader = DataLoader(train_set, batch_sampler=remaining, generator=generator, **loading)
        micro_batches = iter(loader)
        while window := list(itertools.islice(micro_batches, cfg.gradient_accumulation_steps)):
            state.batches_done += len(window)
            epoch = state.epoch + state.batches_done / len(batches)
            epoch_end = state.batches_done == len(batches)
            if epoch_end:
                state.epoch += 1
                state.batches_done = 0
            yield window, epoch, epoch_end
