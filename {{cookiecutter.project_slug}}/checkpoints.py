"""Checkpoints on disk: complete or absent, found by step, rotated without losing the best.

Layout: output_dir/checkpoints/step-<N>/ holds model.safetensors, optimizer.bin, scaler.pt (fp16),
random_states_<process>.pkl (one per process), config.yaml and trainer_state.json (readable JSON:
step, epoch, position in the epoch, best metric and checkpoint, early-stopping count).
A save is written under .tmp-step-<N> and renamed when complete, so a kill at any moment leaves
either the previous checkpoints or the new one, never a half-written one that `latest` would pick.
"""

import json
import os
import shutil
from pathlib import Path

from config import UsageError, to_yaml


def checkpoint_dirs(output_dir):
    """Complete checkpoints, oldest first. Saves in progress live under .tmp-* and never count."""
    found = Path(output_dir, "checkpoints").glob("step-*")
    complete = [p for p in found if p.name[5:].isdigit() and (p / "trainer_state.json").is_file()]
    return sorted(complete, key=lambda path: int(path.name[5:]))


def check_output_dir(cfg, task, world):
    """Refuse to clobber a run; find the checkpoint to resume from and its saved state. Reads only."""
    output_dir, checkpoint, saved = Path(cfg.output_dir), None, None
    results = [output_dir / "final", output_dir / "metrics.jsonl"]  # a run's other traces
    if cfg.resume_from_checkpoint == "latest":
        found = checkpoint_dirs(output_dir)
        if not found:
            raise UsageError(f"resume_from_checkpoint=latest, but {output_dir}/checkpoints holds none.")
        checkpoint = found[-1]
    elif cfg.resume_from_checkpoint:
        checkpoint = Path(cfg.resume_from_checkpoint)
        if not (checkpoint / "trainer_state.json").is_file():
            raise UsageError(f"resume_from_checkpoint {checkpoint} is not a complete checkpoint.")
    elif not cfg.overwrite_output_dir and (checkpoint_dirs(output_dir) or any(map(Path.exists, results))):
        raise UsageError(
            f"{output_dir} already holds a run: resume with --resume_from_checkpoint latest, "
            "or start afresh with --overwrite_output_dir true."
        )
    if checkpoint:
        try:
            saved = json.loads((checkpoint / "trainer_state.json").read_text())
            origin, batching = (saved["task"], saved["model"]), (saved["global_batch"], saved["accumulation"])
        except (ValueError, KeyError):
            raise UsageError(f"Checkpoint {checkpoint} has an unreadable trainer_state.json.") from None
        model_id = cfg.model_name_or_path or cfg.config_name
        if origin != (task, model_id):
            raise UsageError(f"Checkpoint {checkpoint} is from {origin[1]} ({origin[0]}), not {model_id}.")
        if batching != (cfg.per_device_train_batch_size * world, cfg.gradient_accumulation_steps):
            raise UsageError(
                f"Checkpoint {checkpoint} was trained with {batching[0]} samples per micro-batch over all processes "
                f"and accumulation {batching[1]}; resume with the same, or its position in the data is lost."
            )
    existing = next((p for p in [output_dir, *output_dir.parents] if p.exists()), Path("."))
    if not existing.is_dir() or not os.access(existing, os.W_OK):
        raise UsageError(f"Cannot write to output_dir {output_dir}: {existing} is not a writable directory.")
    return checkpoint, saved


def start_run(cfg, accelerator, checkpoint):
    """The run's first writes, once everything has loaded: clear an overwritten run, drop saves
    cut short by a kill, record the resolved config."""
    output_dir = Path(cfg.output_dir)
    if accelerator.is_main_process:
        try:
            output_dir.mkdir(parents=True, exist_ok=True)
            if cfg.overwrite_output_dir and not checkpoint:
                shutil.rmtree(output_dir / "checkpoints", ignore_errors=True)
                shutil.rmtree(output_dir / "final", ignore_errors=True)
                (output_dir / "metrics.jsonl").unlink(missing_ok=True)
            for stale in output_dir.glob("checkpoints/.tmp-*"):
                shutil.rmtree(stale)
            (output_dir / "config.yaml").write_text(to_yaml(cfg))
        except OSError as error:
            raise UsageError(f"Cannot write to output_dir {output_dir}: {error.strerror}.") from None
    accelerator.wait_for_everyone()


def save_checkpoint(accelerator, cfg, state):
    """Every process writes its part under a temporary name; a rename makes it complete."""
    root = Path(cfg.output_dir, "checkpoints")
    final, partial = root / f"step-{state['global_step']}", root / f".tmp-step-{state['global_step']}"
    if state["best_step"] == state["global_step"]:
        state["best_checkpoint"] = str(final)
    accelerator.save_state(partial)  # collective under FSDP/DeepSpeed: all processes call it
    if accelerator.is_main_process:
        (partial / "config.yaml").write_text(to_yaml(cfg))
        (partial / "trainer_state.json").write_text(json.dumps(state, indent=2))  # written last
        shutil.rmtree(final, ignore_errors=True)  # the same step saved by an earlier attempt
        partial.rename(final)
        if cfg.save_total_limit:  # delete the oldest, but never the newest or the best
            complete = checkpoint_dirs(cfg.output_dir)
            keep = {complete[-1], Path(state["best_checkpoint"] or complete[-1])}
            excess = len(complete) - max(cfg.save_total_limit, len(keep))
            for path in [path for path in complete if path not in keep][: max(0, excess)]:
                shutil.rmtree(path)
    accelerator.wait_for_everyone()
