"""Checkpoints on disk: complete or absent, found by step, rotated without losing the best.

Layout: output_dir/checkpoints/step-<N>/ holds model.safetensors, optimizer.bin, scaler.pt (fp16),
random_states_<process>.pkl (one per process), config.yaml and trainer_state.json (readable JSON:
step, epoch, position in the epoch, best metric and checkpoint, early-stopping count).
A save is written under .tmp-step-<N> and renamed when complete, so a kill at any moment leaves
either the previous checkpoints or the new one, never a half-written one that `latest` would pick.
"""

import json
import shutil
from pathlib import Path

from config import UsageError, to_yaml


def checkpoint_dirs(output_dir):
    """Complete checkpoints, oldest first. Saves in progress live under .tmp-* and never count."""
    found = Path(output_dir, "checkpoints").glob("step-*")
    complete = [p for p in found if p.name[5:].isdigit() and (p / "trainer_state.json").is_file()]
    return sorted(complete, key=lambda path: int(path.name[5:]))


def prepare_output_dir(cfg, accelerator, task):
    """Refuse to clobber a run, find the checkpoint to resume from, record the resolved config."""
    output_dir, checkpoint = Path(cfg.output_dir), None
    if cfg.resume_from_checkpoint == "latest":
        found = checkpoint_dirs(output_dir)
        if not found:
            raise UsageError(f"resume_from_checkpoint=latest, but {output_dir}/checkpoints holds none.")
        checkpoint = found[-1]
    elif cfg.resume_from_checkpoint:
        checkpoint = Path(cfg.resume_from_checkpoint)
        if not (checkpoint / "trainer_state.json").is_file():
            raise UsageError(f"resume_from_checkpoint {checkpoint} is not a complete checkpoint.")
    elif checkpoint_dirs(output_dir) and not cfg.overwrite_output_dir:
        raise UsageError(
            f"{output_dir} already holds checkpoints: resume with --resume_from_checkpoint latest, "
            "or start afresh with --overwrite_output_dir true."
        )
    if checkpoint:
        saved = json.loads((checkpoint / "trainer_state.json").read_text())
        model_id = cfg.model_name_or_path or cfg.config_name
        if (saved["task"], saved["model"]) != (task, model_id):
            raise UsageError(f"Checkpoint {checkpoint} is from {saved['model']} ({saved['task']}), not {model_id}.")
    if accelerator.is_main_process:
        try:
            output_dir.mkdir(parents=True, exist_ok=True)
            if cfg.overwrite_output_dir and not checkpoint:
                for old in ("checkpoints", "final"):
                    shutil.rmtree(output_dir / old, ignore_errors=True)
                (output_dir / "metrics.jsonl").unlink(missing_ok=True)
            for stale in output_dir.glob("checkpoints/.tmp-*"):  # saves cut short by a kill
                shutil.rmtree(stale)
            (output_dir / "config.yaml").write_text(to_yaml(cfg))
        except OSError as error:
            raise UsageError(f"Cannot write to output_dir {output_dir}: {error.strerror}.") from None
    accelerator.wait_for_everyone()
    return checkpoint


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
