"""Train a model with an explicit Hugging Face Accelerate loop.

    python train.py --config configs/debug.yaml              # a check in seconds, on a laptop
    python train.py --config configs/default.yaml            # the real run, 1 CPU or GPU
    accelerate launch --config_file configs/accelerate/multi_gpu.yaml train.py  # N GPUs

The loop only, in execution order; task.py holds what the task decides. Guaranteed (README,
tests/): accumulation and process count do not change the numbers, a killed run resumes exactly.
"""

import ctypes
import gc
import itertools
import json
import logging
import math
import os
import platform
import signal
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import ProjectConfiguration, set_seed
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

import checkpoints
import cli
import hub
import lora
import plots
{% if cookiecutter.task == "causal-lm" %}
import streaming
{% endif %}
import task
from config import LoopOptions, UsageError, check_metric_for_best_model
from data import load_datasets
from optim import build_optimizer

# Tokenizer threads and data-loader worker processes can deadlock each other.
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# The imports made objects that live until exit; full garbage collections now skip them.
gc.freeze()
# Tied input and output embeddings are saved once; accelerate warns about that at every save.
logging.getLogger("accelerate.utils.other").setLevel(logging.ERROR)


@dataclass
class Config(task.Options, LoopOptions):
    """Every option: the loop's (config.py) and the task's (task.py)."""


def lr_at(update, total, warmup, cfg):
    """Learning rate of update `update` (0-based), as transformers' schedulers define it. A pure
    function: exact for any accumulation, process count or resume point; nothing to checkpoint."""
    if update < warmup:
        return cfg.learning_rate * update / max(1, warmup)
    progress = min(1.0, (update - warmup) / max(1, total - warmup))
    if cfg.lr_scheduler_type == "linear":
        return cfg.learning_rate * (1.0 - progress)
    if cfg.lr_scheduler_type == "cosine":
        return cfg.learning_rate * 0.5 * (1.0 + math.cos(math.pi * progress))
    if cfg.lr_scheduler_type == "cosine_with_restarts":
        cycle_progress = (cfg.lr_num_cycles * progress) % 1.0 if progress < 1 else 1.0
        return cfg.learning_rate * 0.5 * (1.0 + math.cos(math.pi * cycle_progress))
    if cfg.lr_scheduler_type == "polynomial":
        span = cfg.learning_rate - cfg.lr_end
        return span * (1.0 - progress) ** cfg.lr_power + cfg.lr_end
    return cfg.learning_rate  # constant and constant_with_warmup


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


def is_due(strategy, every, step, epoch_end, last):
    """Whether eval_strategy/save_strategy asks for work after this update (and after the last)."""
    scheduled = step % every == 0 if strategy == "steps" else epoch_end
    return strategy != "no" and (last or scheduled)


@dataclass
class Totals:
    """Sums between two log records. The loss stays on the device until a log reads it: no wait."""

    loss: torch.Tensor
    updates: int = 0
    tokens: int = 0
    samples: int = 0
    started: float = field(default_factory=time.perf_counter)

    def summary(self, world, flops_per_token, cfg):
        """The throughput and mean loss of the log record; mfu when peak_tflops is set."""
        elapsed = time.perf_counter() - self.started
        record = {
            "loss": self.loss.item() / max(1, self.updates),
            "tokens_per_second": round(self.tokens * world / elapsed, 1),
            "samples_per_second": round(self.samples * world / elapsed, 1),
        }
        if cfg.peak_tflops:
            achieved = flops_per_token * self.tokens / elapsed
            record["mfu"] = round(achieved / (cfg.peak_tflops * 1e12), 4)
        return record


def keep_freed_cpu_memory(device):
    """glibc gives each large tensor fresh pages, which the kernel zeroes on first touch, and
    frees them at once: CPU updates then spend much time in page faults. Keeping freed memory on
    the heap makes a MiniLM-size update ~3% faster, same peak (bench/README.md). glibc only."""
    if device.type == "cpu" and platform.libc_ver()[0] == "glibc":
        libc = ctypes.CDLL(None)
        libc.mallopt(-4, 0)  # M_MMAP_MAX: no block gets a mapping of its own
        libc.mallopt(-1, 2**31 - 1)  # M_TRIM_THRESHOLD: keep up to 2 GiB of freed memory


def start_processes(cfg):
    accelerator = Accelerator(
        mixed_precision=cfg.mixed_precision,
        log_with=None if cfg.report_to == "none" else cfg.report_to,
        project_config=ProjectConfiguration(cfg.output_dir, logging_dir=f"{cfg.output_dir}/logs"),
        dynamo_backend="inductor" if cfg.torch_compile else "no",
    )
    if int(os.environ.get("WORLD_SIZE", "1")) != accelerator.num_processes:
        raise UsageError("Processes would train alone: without GPUs set ACCELERATE_USE_CPU=true.")
    keep_freed_cpu_memory(accelerator.device)
    if accelerator.distributed_type == "DEEPSPEED" and cfg.gradient_accumulation_steps > 1:
        raise UsageError("DeepSpeed steps at every backward: set gradient_accumulation_steps=1.")
    return accelerator


def count_updates(cfg, train_set, accelerator):
    """Updates in the whole run, and how many of them warm up. An epoch's last update may hold
    fewer micro-batches, so the count comes from this process's shard of the data."""
    world = accelerator.num_processes
    total = cfg.max_steps
    if total == -1:
        num_samples = len(train_set)
        batches = epoch_micro_batches(num_samples, 0, cfg, world, accelerator.process_index)
        dropped = num_samples % (cfg.per_device_train_batch_size * world)
        if 0 < dropped < world:
            accelerator.print(f"Note: each epoch skips its last {dropped} sample(s): one each.")
        updates_per_epoch = math.ceil(len(batches) / cfg.gradient_accumulation_steps)
        total = math.ceil(cfg.num_train_epochs * updates_per_epoch)
    plan = f"{world} process(es) x batch {cfg.per_device_train_batch_size}"
    accelerator.print(f"Training: {total} updates of {plan} x {cfg.gradient_accumulation_steps}.")
    warmup = cfg.warmup_steps or math.ceil(cfg.warmup_ratio * total)
    if warmup >= total:
        raise UsageError(f"Warmup ({warmup} updates) must be shorter than training ({total}).")
    return total, warmup


def update_windows(train_set, state, cfg, accelerator, options):
    """The micro-batches of each update, k at a time (an epoch's last window may hold fewer),
    epoch after epoch from the position in `state`, which it advances. Yields (micro-batches,
    fractional epoch, whether the window ends an epoch); the caller stops after the last update."""
    world, rank = accelerator.num_processes, accelerator.process_index
    while state.global_step < state.total_updates:
        batches = epoch_micro_batches(len(train_set), state.epoch, cfg, world, rank)
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


def accumulate_gradients(accelerator, model, window, cfg):
    """Backward over the window's micro-batches so that the gradient is that of the mean loss
    over all targets of the update, on all processes. Returns that loss (on the device)."""
    world = accelerator.num_processes
    local_targets = sum(task.target_counts(batch).sum() for batch in window)
    update_targets = accelerator.reduce(local_targets.float(), "sum")
    update_loss = torch.zeros((), device=accelerator.device)
    for i, batch in enumerate(window):
        # Gradients are all-reduced once, on the last micro-batch.
        last = i == len(window) - 1
        with nullcontext() if last else accelerator.no_sync(model):
            losses = task.summed_losses(cfg, model, batch)[0]  # the logits are not kept
            # DDP averages gradients over processes; the process count undoes that.
            loss = losses.sum() * world / update_targets
            accelerator.backward(loss)
        update_loss += loss.detach() / world
    return accelerator.reduce(update_loss, "sum")


@torch.no_grad()
def evaluate(accelerator, model, eval_loader, cfg, label_names, tokenizer):
    """Every sample counted once: gather_for_metrics drops the duplicates that even out shards.
    Per-token predictions and generated tokens are padded (-100) across processes first."""
    model.eval()
    unwrapped = accelerator.unwrap_model(model, keep_torch_compile=False)  # for generate()
    loss_sum = torch.zeros((), dtype=torch.float64, device=accelerator.device)
    target_count = torch.zeros((), dtype=torch.long, device=accelerator.device)
    gathered = {}
    for batch in eval_loader:
        losses, logits = task.summed_losses(cfg, model, batch)
        losses, counts = accelerator.gather_for_metrics((losses, task.target_counts(batch)))
        loss_sum += losses.double().sum()
        target_count += counts.sum()
        predictions = task.eval_predictions(cfg, unwrapped, logits, batch)
        del logits  # the largest tensor here: gone before the next batch's forward makes its own
        for name, values in predictions.items():
            values = accelerator.pad_across_processes(values, dim=1, pad_index=-100)
            gathered.setdefault(name, []).extend(accelerator.gather_for_metrics(values).tolist())
    model.train()
    # Target-weighted: the mean over every target, not over batches.
    return task.eval_scores(cfg, (loss_sum / target_count).item(), gathered, label_names, tokenizer)


def check_finite(health, last_good, cfg):
    """A diverged model is never checkpointed. `health` sums every update's loss and grad norm,
    so it is finite only while all of them were."""
    if not math.isfinite(health.item()):
        good = checkpoints.checkpoint_dirs(cfg.output_dir)
        raise UsageError(
            f"The loss or gradient norm became non-finite after update {last_good}; the last good "
            f"checkpoint is {good[-1] if good else 'none'}. Lower learning_rate, or skip such "
            "updates with on_nonfinite=skip."
        )


def train(cfg):
    started = time.perf_counter()
    accelerator = start_processes(cfg)
    hub.check(cfg)  # push_to_hub: stop now if the hub cannot be reached, not after training
    device, world = accelerator.device, accelerator.num_processes
    # Reads only: nothing on disk changes until start_run below.
    checkpoint, saved_state = checkpoints.find_resume_checkpoint(cfg, task.NAME, world)
    set_seed(cfg.seed)
    tokenizer, model_config = task.load_tokenizer_and_config(cfg)
    if cfg.eval_strategy != "no":
        check_metric_for_best_model(cfg, task.eval_metric_names(cfg))
{% if cookiecutter.task == "causal-lm" %}
    load = streaming.load_datasets if cfg.streaming else load_datasets  # data as a stream
    train_set, eval_set, label_names = load(cfg, accelerator, tokenizer)
{% else %}
    train_set, eval_set, label_names = load_datasets(cfg, accelerator, tokenizer)
{% endif %}
    loader_options = {
        "collate_fn": partial(task.collate, cfg, tokenizer=tokenizer, epoch=None),
        "num_workers": cfg.dataloader_num_workers,
        "pin_memory": device.type == "cuda",  # faster host-to-GPU copies
    }
    eval_loader = DataLoader(eval_set, batch_size=cfg.per_device_eval_batch_size, **loader_options)

    model = task.build_model(cfg, model_config, label_names)
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    # FLOPs of a forward and backward pass, for the mfu log; then use_peft's adapters (lora.py).
    flops_per_token = 6 * sum(p.numel() for p in model.parameters())
    model = lora.wrap(cfg, model, accelerator)
    optimizer = build_optimizer(cfg, model, device)
    model, optimizer, eval_loader = accelerator.prepare(model, optimizer, eval_loader)
    # Listed once, so the update does not walk the modules to find them.
    clipped = list(model.parameters())

    total_updates, warmup = count_updates(cfg, train_set, accelerator)
    state = checkpoints.TrainerState.start(cfg, task.NAME, world, total_updates)
    if checkpoint:
        state = checkpoints.load_checkpoint(accelerator, checkpoint, saved_state, total_updates)
    # The first writes: config.yaml, the tracker, and clearing an overwritten run.
    checkpoints.start_run(cfg, accelerator, checkpoint, state.global_step)

    def log(record):
        if accelerator.is_main_process:
            with Path(cfg.output_dir, "metrics.jsonl").open("a") as stream:
                stream.write(json.dumps(record) + "\n")
        accelerator.log(record, step=record["step"])

    # SLURM sends SIGTERM or SIGUSR1 before it kills a job, Ctrl-C sends SIGINT: finish the
    # update, save, stop. A second Ctrl-C stops at once; the last complete checkpoint stays.
    stop_signals = []

    def request_stop(signum, frame):
        if signum == signal.SIGINT and signal.SIGINT in stop_signals:
            os._exit(130)
        # Recorded before the message, so a Ctrl-C after the message is always a second one.
        stop_signals.append(signum)
        if signum == signal.SIGINT and accelerator.is_main_process:
            print("\nStopping after this update (Ctrl-C again: at once).", flush=True)

    for signum in (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT):
        signal.signal(signum, request_stop)
    stop_group = torch.distributed.new_group(backend="gloo") if world > 1 else None
    totals = Totals(torch.zeros((), dtype=torch.float64, device=device))
    health = torch.zeros((), device=device)
    last_good = state.global_step
    stopped_by_signal = False
    last_eval = "none in this run"
    on_screen = accelerator.is_local_main_process
    progress = tqdm(total=total_updates, initial=state.global_step, disable=not on_screen)
    model.train()
{% if cookiecutter.task == "causal-lm" %}
    make_windows = streaming.update_windows if cfg.streaming else update_windows
    windows = make_windows(train_set, state, cfg, accelerator, loader_options)
{% else %}
    windows = update_windows(train_set, state, cfg, accelerator, loader_options)
{% endif %}
    for window, epoch, epoch_end in windows:
        # Counted from the loader's CPU tensors: no device sync.
        totals.tokens += sum(task.count_tokens(batch) for batch in window)
        totals.samples += sum(len(batch["labels"]) for batch in window)
        window = [{k: v.to(device, non_blocking=True) for k, v in b.items()} for b in window]
        update_loss = accumulate_gradients(accelerator, model, window, cfg)
        grad_norm = accelerator.clip_grad_norm_(clipped, cfg.max_grad_norm or math.inf)
        learning_rate = lr_at(state.global_step, total_updates, warmup, cfg)
        for group in optimizer.param_groups:
            group["lr"] = learning_rate * group["lr_scale"]
        # fp16 overflows are normal (the grad scaler skips those updates): only its loss counts.
        update_health = update_loss if cfg.mixed_precision == "fp16" else update_loss + grad_norm
        # The only per-update device sync, and only with on_nonfinite=skip.
        if cfg.on_nonfinite == "skip" and not torch.isfinite(update_health).item():
            state.skipped_updates += 1
        else:
            optimizer.step()
            health += update_health
            totals.loss += update_loss
            totals.updates += 1
        optimizer.zero_grad(set_to_none=True)
        state.global_step += 1
        progress.update(1)

        step = state.global_step
        last = step == total_updates
        log_now = step % cfg.logging_steps == 0 or last
        eval_now = is_due(cfg.eval_strategy, cfg.eval_steps, step, epoch_end, last)
        save_now = is_due(cfg.save_strategy, cfg.save_steps, step, epoch_end, last)
        # Processes agree on stopping through a CPU (gloo) all-reduce: no wait for a GPU.
        stop_flag = torch.tensor(len(stop_signals))
        if stop_group is not None:
            torch.distributed.all_reduce(stop_flag, group=stop_group)
        stopped_by_signal = stop_flag.item() > 0
        if log_now:
            record = {"step": step, "epoch": round(epoch, 4), "learning_rate": learning_rate}
            record.update(totals.summary(world, flops_per_token, cfg))
            record.update(grad_norm=grad_norm.item(), skipped_updates=state.skipped_updates)
            log(record)
            progress.set_postfix(loss=f"{record['loss']:.4f}")
            totals = Totals(torch.zeros((), dtype=torch.float64, device=device))
        # Checked after the log shows the bad value, before an eval or a save could use it.
        if log_now or eval_now or save_now or stopped_by_signal:
            check_finite(health, last_good, cfg)
            last_good = step

        # Eval and save time is kept out of the throughput.
        paused = time.perf_counter()
        early_stop = False
        if eval_now:
            scores = evaluate(accelerator, model, eval_loader, cfg, label_names, tokenizer)
            log({"step": step, "epoch": round(epoch, 4), **scores})
            # The best value of metric_for_best_model, and patience for early stopping.
            early_stop = state.record_eval(scores[cfg.metric_for_best_model], cfg)
            shown = " ".join(f"{name[5:]} {value:.4g}" for name, value in scores.items())
            last_eval = f"step {step}: {shown}" + (" (best)" if state.best_step == step else "")
            if on_screen:
                progress.write(f"eval {last_eval}", file=sys.stdout)
        if save_now or stopped_by_signal:
            checkpoints.save_checkpoint(accelerator, cfg, state)
        totals.started += time.perf_counter() - paused
        if last or stopped_by_signal or early_stop:
            break
    progress.close()

    took = time.strftime("%H:%M:%S", time.gmtime(time.perf_counter() - started))
    if stopped_by_signal:
        resume = f"python train.py --output_dir {cfg.output_dir} --resume_from_checkpoint latest"
        accelerator.print(f"Stopped with a checkpoint. Resume: {resume}")
    else:
        best = Path(cfg.output_dir, "checkpoints", f"step-{state.best_step}")
        if cfg.load_best_model_at_end and best.is_dir():
            accelerator.load_state(best)
            accelerator.print(f"Loaded the best model, {best}.")
        checkpoints.save_final_model(accelerator, model, tokenizer, cfg)
        final = Path(cfg.output_dir, "final")
        accelerator.print(f"Done: {state.global_step} updates in {took}; model: {final}")
        if state.best_metric is not None:
            metric = f"{cfg.metric_for_best_model} {state.best_metric:.4g}"
            accelerator.print(f"  best {metric} at step {state.best_step}; last eval {last_eval}")
        accelerator.print(f"  load it: {task.MODEL_CLASS.__name__}.from_pretrained({str(final)!r})")
        if cfg.plot_curves and accelerator.is_main_process:
            plots.save_curves(cfg.output_dir)  # curves.png; python plots.py draws any run's
    accelerator.end_training()


def main(argv):
    cli.run(train, Config, argv)


if __name__ == "__main__":
    main(sys.argv[1:])
