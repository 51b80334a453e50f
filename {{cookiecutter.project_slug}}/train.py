"""Train a model with an explicit Hugging Face Accelerate loop.

    python train.py --config configs/debug.yaml              # a check in seconds, on a laptop
    python train.py --config configs/default.yaml            # the real run, 1 CPU or GPU
    accelerate launch --config_file configs/accelerate/multi_gpu.yaml train.py  # N GPUs

The loop only, in execution order. Yours to edit, like task.py (what the task decides) and
config.py (the options); trainkit/ is the machinery it calls. Guaranteed (README,
tests/): accumulation and process count do not change the numbers, a killed run resumes exactly.
"""

import gc
import json
import logging
import math
import os
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import torch
from accelerate.utils import set_seed
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

import task
from config import Config
from trainkit import checkpoints, cli, hub, lora, plots
from trainkit.batching import epoch_micro_batches, update_windows
from trainkit.data import load_datasets
from trainkit.optim import build_optimizer, set_learning_rate
from trainkit.options import UsageError, check_metric_for_best_model
from trainkit.processes import StopRequests, exit_process, fit_fsdp_wrapping, start_processes
from trainkit.report import write as report_classes

# Tokenizer threads and data-loader worker processes can deadlock each other.
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# The imports made objects that live until exit; full garbage collections now skip them.
gc.freeze()
# Tied input and output embeddings are saved once; accelerate warns about that at every save.
logging.getLogger("accelerate.utils.other").setLevel(logging.ERROR)


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

    def count(self, window):
        """Tokens and samples, counted from the loader's CPU tensors: no device sync."""
        self.tokens += sum(task.count_tokens(batch) for batch in window)
        self.samples += sum(len(batch["labels"]) for batch in window)

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


def batch_making(cfg, tokenizer, device):
    """The DataLoader options of training and evaluation: the task's collate (epoch None: no
    augmentation; training's loader sets it), worker processes, pinned memory on a GPU."""
    return {
        "collate_fn": partial(task.collate, cfg, tokenizer=tokenizer, epoch=None),
        "num_workers": cfg.dataloader_num_workers,
        "pin_memory": device.type == "cuda",  # faster host-to-GPU copies
    }


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


def take_update(accelerator, model, optimizer, clipped, window, learning_rate, cfg):
    """One optimizer update at `learning_rate`: the window's gradients, clipped, then a step.
    Returns (loss, gradient norm, health) on the device; health (what check_finite watches) is
    None when on_nonfinite=skip found it non-finite and the step was skipped."""
    # Set before the backward: DeepSpeed steps inside it (times each group's scale, optim.py).
    set_learning_rate(optimizer, learning_rate)
    update_loss = accumulate_gradients(accelerator, model, window, cfg)
    grad_norm = accelerator.clip_grad_norm_(clipped, cfg.max_grad_norm or math.inf)
    # fp16 overflows are normal (the grad scaler skips those updates): only its loss counts.
    update_health = update_loss if cfg.mixed_precision == "fp16" else update_loss + grad_norm
    # The only per-update device sync, and only with on_nonfinite=skip.
    if cfg.on_nonfinite == "skip" and not torch.isfinite(update_health).item():
        update_health = None
    else:
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return update_loss, grad_norm, update_health


@torch.no_grad()
def evaluate(accelerator, model, eval_loader, cfg, label_names, tokenizer, report=None):
    """Every sample counted once: gather_for_metrics drops the duplicates that even out shards.
    Per-token predictions and generated tokens are padded (-100) across processes first. A
    classifier's scores class by class go to `report`, by default output_dir/eval_report.md."""
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
    if accelerator.is_main_process:
        report_classes(report or Path(cfg.output_dir, "eval_report.md"), gathered, label_names)
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
    """One run, in execution order: processes, data, model, resume, the updates, final/."""
    started = time.perf_counter()
    accelerator = start_processes(cfg)
    hub.check(cfg)  # push_to_hub: stop now if the hub cannot be reached, not after training
    device, world = accelerator.device, accelerator.num_processes
    # Reads only: nothing on disk changes until start_run below.
    checkpoint, saved_state = checkpoints.find_resume_checkpoint(cfg, task.NAME, world)
    set_seed(cfg.seed)
    tokenizer, model_config = task.load_tokenizer_and_config(cfg)
    check_metric_for_best_model(cfg, task.eval_metric_names)  # when the run evaluates
    train_set, eval_set, label_names = load_datasets(cfg, accelerator, tokenizer, task)
    loader_options = batch_making(cfg, tokenizer, device)
    eval_loader = DataLoader(eval_set, batch_size=cfg.per_device_eval_batch_size, **loader_options)

    model = task.build_model(cfg, model_config, label_names)
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    # FLOPs of a forward and backward pass, for the mfu log; then use_peft's adapters (lora.py).
    flops_per_token = 6 * sum(p.numel() for p in model.parameters())
    model = lora.wrap(cfg, model, accelerator)
    optimizer = build_optimizer(cfg, model, device)
    fit_fsdp_wrapping(accelerator, model)  # FSDP2 only: which modules become shards
    model, optimizer, eval_loader = accelerator.prepare(model, optimizer, eval_loader)
    # Listed once, so the update does not walk the modules to find them.
    clipped = list(model.parameters())

    total_updates, warmup = count_updates(cfg, train_set, accelerator)
    state = checkpoints.TrainerState.start(cfg, task.NAME, world, total_updates)
    if checkpoint:
        state = checkpoints.load_checkpoint(accelerator, checkpoint, saved_state, total_updates)
    # The first writes: config.yaml, the tracker, and clearing an overwritten run.
    checkpoints.start_run(cfg, accelerator, checkpoint, state.global_step)

    stop_requests = StopRequests(accelerator)  # SLURM's SIGTERM or SIGUSR1, Ctrl-C: save, stop
    totals = Totals(torch.zeros((), dtype=torch.float64, device=device))
    health = torch.zeros((), device=device)
    last_good, stopped_by_signal = state.global_step, False
    last_eval, shown_at = "none in this run", state.global_step
    on_screen = accelerator.is_local_main_process
    # Closed however the loop ends: an error then prints on a line of its own, not the bar's.
    with tqdm(total=total_updates, initial=state.global_step, disable=not on_screen) as progress:
        model.train()
        windows = update_windows(train_set, state, cfg, accelerator, loader_options)
        for window, epoch, epoch_end in windows:
            totals.count(window)
            window = [{k: v.to(device, non_blocking=True) for k, v in b.items()} for b in window]
            learning_rate = lr_at(state.global_step, total_updates, warmup, cfg)
            update_loss, grad_norm, update_health = take_update(
                accelerator, model, optimizer, clipped, window, learning_rate, cfg
            )
            if update_health is None:  # skipped: non-finite, with on_nonfinite=skip
                state.skipped_updates += 1
            else:
                health += update_health
                totals.loss += update_loss
                totals.updates += 1
            state.global_step += 1
            progress.update(1)

            step = state.global_step
            last = step == total_updates
            log_now = step % cfg.logging_steps == 0 or last
            eval_now = is_due(cfg.eval_strategy, cfg.eval_steps, step, epoch_end, last)
            save_now = is_due(cfg.save_strategy, cfg.save_steps, step, epoch_end, last)
            stopped_by_signal = stop_requests.agreed()  # on every process, if any was asked
            if log_now:
                record = {"step": step, "epoch": round(epoch, 4), "learning_rate": learning_rate}
                record.update(totals.summary(world, flops_per_token, cfg))
                # float(): DeepSpeed gives the norm as a float, the others as a tensor.
                record.update(grad_norm=float(grad_norm), skipped_updates=state.skipped_updates)
                record.update(task.train_metrics(accelerator))  # the task's own: dpo's rewards
                log(accelerator, cfg, record)
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
                log(accelerator, cfg, {"step": step, "epoch": round(epoch, 4), **scores})
                # The best value of metric_for_best_model, and patience for early stopping.
                early_stop = state.record_eval(scores[cfg.metric_for_best_model], cfg)
                last_eval = eval_line(scores, state)
                # About ten lines a run, and the last (metrics.jsonl has all): 50 epochs read well.
                if on_screen and (last or step - shown_at >= total_updates / 10):
                    progress.write(f"eval {last_eval}", file=sys.stdout)
                    shown_at = step
            if save_now or stopped_by_signal:
                checkpoints.save_checkpoint(accelerator, cfg, state)
            totals.started += time.perf_counter() - paused
            if last or stopped_by_signal or early_stop:
                break

    finish(accelerator, cfg, model, tokenizer, state, stopped_by_signal, last_eval, started)


def eval_line(scores, state):
    """An evaluation as the console shows it: step 40: loss 1.234 accuracy 0.5 (best)."""
    shown = " ".join(f"{name[5:]} {value:.4g}" for name, value in scores.items())
    best = " (best)" if state.best_step == state.global_step else ""
    return f"step {state.global_step}: {shown}{best}"


def log(accelerator, cfg, record):
    """One record: a line of metrics.jsonl, and the tracker's."""
    if accelerator.is_main_process:
        with Path(cfg.output_dir, "metrics.jsonl").open("a") as stream:
            stream.write(json.dumps(record) + "\n")
    accelerator.log(record, step=record["step"])


def finish(accelerator, cfg, model, tokenizer, state, stopped_by_signal, last_eval, started):
    """After the last update: final/ (the best model's, with load_best_model_at_end) and a
    summary; after a stop signal, the command that resumes."""
    took = time.strftime("%H:%M:%S", time.gmtime(time.perf_counter() - started))
    if stopped_by_signal:
        resume = f"python train.py --output_dir {cfg.output_dir} --resume_from_checkpoint latest"
        accelerator.print(f"Stopped with a checkpoint. Resume: {resume}")
    else:
        best = Path(cfg.output_dir, "checkpoints", f"step-{state.best_step}")
        if cfg.load_best_model_at_end and best.is_dir():
            accelerator.load_state(best)
            accelerator.print(f"Loaded the best model, {best}.")
        checkpoints.save_final_model(accelerator, model, tokenizer, cfg, task)
        final = Path(cfg.output_dir, "final")
        accelerator.print(f"Done: {state.global_step} updates in {took}; model: {final}")
        if state.best_metric is not None:
            metric = f"{cfg.metric_for_best_model} {state.best_metric:.4g}"
            accelerator.print(f"  best {metric} at step {state.best_step}; last eval {last_eval}")
        loader = task.model_class().__name__
        accelerator.print(f"  load it: {loader}.from_pretrained({str(final)!r})")
        if Path(cfg.output_dir, "eval_report.md").is_file():
            accelerator.print(f"  by class, the last eval: {cfg.output_dir}/eval_report.md")
        if cfg.plot_curves and accelerator.is_main_process:
            plots.save_curves(cfg.output_dir)  # python -m trainkit.plots draws any run's
    accelerator.end_training()


def main(argv):
    cli.run(train, Config, argv)


if __name__ == "__main__":
    main(sys.argv[1:])
    exit_process(0)  # not through Python's teardown where processes ran: processes.py says why
