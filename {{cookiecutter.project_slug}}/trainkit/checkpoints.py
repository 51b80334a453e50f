"""What a run writes to disk: checkpoints and final/ (with its model card, hub.py), each complete
or absent; checkpoints found by step for resume and rotated without losing the best.

Layout: output_dir/checkpoints/step-<N>/ holds model.safetensors, optimizer.bin, scaler.pt (fp16),
random_states_<process>.pkl (one per process), config.yaml, record.json (what reproduces the run,
record.py), manifest.json (every file's size, checked on resume) and trainer_state.json
(readable JSON: step, epoch, position in the epoch, best metric and its step, early stopping).
Two kit modules change what a checkpoint holds, through Accelerate's save_state and load_state
hooks: lora.py (use_peft) keeps only the trainable weights, streaming.py (streaming=true) adds
each process's place in its stream (stream_position_<process>.json).
A save is written under .tmp-step-<N> and renamed when complete, so a kill at any moment leaves
either the previous checkpoints or the new one, never a half-written one that `latest` would pick.
"""

import contextlib
import dataclasses
import errno
import json
import os
import pickle
import shutil
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from accelerate.utils import load

from trainkit import hub, lora, record
from trainkit.options import UsageError, to_yaml

PREFIX = "step-"
# One run per output_dir: the run that trains there holds this file (host, process, start).
LOCK = "run.lock"


@dataclass
class TrainerState:
    """Where a run is; saved as trainer_state.json in every checkpoint."""

    # What the run trains, and how it batches: a resume must match these.
    task: str
    model: str
    global_batch: int
    accumulation: int
    total_updates: int
    # Position: updates done, and micro-batches done in the current epoch.
    global_step: int = 0
    epoch: int = 0
    batches_done: int = 0
    # Best value of metric_for_best_model, and the update that reached it.
    best_metric: float | None = None
    best_step: int | None = None
    evals_without_improvement: int = 0
    skipped_updates: int = 0

    @classmethod
    def start(cls, cfg, task_name, world, total_updates):
        """The state of a new run."""
        model = cfg.model_name_or_path or cfg.config_name
        batch = cfg.per_device_train_batch_size * world
        return cls(task_name, model, batch, cfg.gradient_accumulation_steps, total_updates)

    def record_eval(self, value, cfg):
        """Keep the best value of metric_for_best_model and the update that reached it; True
        when early_stopping_patience evaluations in a row did not improve on it."""
        best = self.best_metric
        if best is None or (value > best if cfg.greater_is_better else value < best):
            self.best_metric = value
            self.best_step = self.global_step
            self.evals_without_improvement = 0
        else:
            self.evals_without_improvement += 1
        patience = cfg.early_stopping_patience
        return patience is not None and self.evals_without_improvement >= patience


@contextlib.contextmanager
def output_dir_lock(output_dir):
    """Hold output_dir/run.lock while the run lives, so that a second run launched into the same
    output_dir (a job submitted twice, a second terminal) refuses at once, naming the first. A
    lock whose process is gone (a killed run) is taken over. The main process holds it; a
    directory made only for the lock goes with it."""
    if os.environ.get("RANK", "0") != "0":
        yield
        return
    path, made = Path(output_dir, LOCK), not Path(output_dir).exists()
    holder = lock_holder(path)
    if holder:
        raise UsageError(
            f"{output_dir} is in use by another run: process {holder['pid']} on "
            f"{holder['host']}, started {holder['started']}. Wait for it or stop it (a run "
            f"that was killed leaves no live lock; if it ran on another machine and has ended, "
            f"delete {path})."
        )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)  # a stale lock, taken over
        with path.open("x") as stream:  # exclusive: of two runs starting at once, one wins
            json.dump(this_process(), stream)
    except FileExistsError:
        raise UsageError(f"{output_dir} is in use by another run that has just started.") from None
    except OSError:
        path = None  # not writable: the run's own check says so in its words
    try:
        yield
    finally:
        if path is not None:
            path.unlink(missing_ok=True)
            if made and not any(path.parent.iterdir()):
                path.parent.rmdir()


def this_process():
    """What names this process in a lock: host, pid and start time (its pid may be reused later),
    and the SLURM job it belongs to, if any."""
    return {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "start": start_time(os.getpid()),
        "job": os.environ.get("SLURM_JOB_ID"),
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def start_time(pid):
    """When the process started (clock ticks since boot, from /proc: Linux); None where unknown."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def lock_holder(path):
    """The lock's holder if it may still be running; None for no lock or a stale one: its process
    is gone from this host (or its id now names another process), or it was an earlier attempt
    of this SLURM job (a requeued job). A holder on another machine is taken as running."""
    try:
        holder = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    me = this_process()
    if holder.get("job") and holder.get("job") == me["job"]:
        return None
    if holder.get("host") != me["host"]:
        return holder
    if holder.get("start") is None:  # no /proc: the process id alone tells
        try:
            os.kill(holder["pid"], 0)
        except ProcessLookupError:
            return None
        except PermissionError:  # another user's process
            pass
        return holder
    return holder if start_time(holder["pid"]) == holder["start"] else None


def step_of(path):
    """The update a checkpoint directory was saved at: step-40 -> 40; None for other names."""
    number = Path(path).name.removeprefix(PREFIX)
    return int(number) if Path(path).name.startswith(PREFIX) and number.isdigit() else None


def checkpoint_dirs(output_dir):
    """Complete checkpoints, oldest first. Saves in progress live under .tmp-* and never count."""
    found = Path(output_dir, "checkpoints").glob(PREFIX + "*")
    complete = [p for p in found if step_of(p) is not None and (p / "trainer_state.json").is_file()]
    return sorted(complete, key=step_of)


def find_resume_checkpoint(cfg, task_name, world):
    """The checkpoint to resume from and its saved state, or (None, None) for a new run. Reads
    only; refuses what would clobber a run or resume it wrongly."""
    output_dir = Path(cfg.output_dir)
    check_writable(output_dir)
    if not cfg.resume_from_checkpoint:
        refuse_to_clobber(cfg)
        return None, None
    if cfg.resume_from_checkpoint == "latest":
        found = checkpoint_dirs(output_dir)
        if not found:
            raise UsageError(
                f"resume_from_checkpoint=latest, but {output_dir}/checkpoints holds none."
            )
        checkpoint = found[-1]
    else:
        checkpoint = Path(cfg.resume_from_checkpoint)
        if not (checkpoint / "trainer_state.json").is_file():
            raise UsageError(f"resume_from_checkpoint {checkpoint} is not a complete checkpoint.")
    saved = read_state(checkpoint)
    check_same_run(checkpoint, saved, cfg, task_name, world)
    check_intact(checkpoint)
    return checkpoint, saved


def check_writable(output_dir):
    existing = next((p for p in [output_dir, *output_dir.parents] if p.exists()), Path("."))
    if not existing.is_dir() or not os.access(existing, os.W_OK):
        raise UsageError(
            f"Cannot write to output_dir {output_dir}: {existing} is not a writable directory."
        )


def refuse_to_clobber(cfg):
    """A new run into an output_dir that holds one needs --overwrite_output_dir true."""
    output_dir = Path(cfg.output_dir)
    traces = [output_dir / "final", output_dir / "metrics.jsonl"]
    if not cfg.overwrite_output_dir and (
        checkpoint_dirs(output_dir) or any(map(Path.exists, traces))
    ):
        raise UsageError(
            f"{output_dir} already holds a run: resume with --resume_from_checkpoint latest, "
            "or start afresh with --overwrite_output_dir true."
        )


def read_state(checkpoint):
    try:
        saved = json.loads((checkpoint / "trainer_state.json").read_text())
        fields = {spec.name for spec in dataclasses.fields(TrainerState)}
        return {name: value for name, value in saved.items() if name in fields}
    except (ValueError, AttributeError):
        raise UsageError(f"Checkpoint {checkpoint} has an unreadable trainer_state.json.") from None


def check_intact(checkpoint):
    """Every file the save wrote, at the size it was written (manifest.json): a copy cut short
    or a file lost is named before anything loads."""
    manifest = checkpoint / "manifest.json"
    sizes = json.loads(manifest.read_text()) if manifest.is_file() else {}
    for name, size in sizes.items():
        path = checkpoint / name
        found = path.stat().st_size if path.is_file() else None
        if found != size:
            what = "is missing" if found is None else f"has {found:,} bytes, not {size:,}"
            raise UsageError(
                f"Checkpoint {checkpoint} is damaged: {name} {what} (a copy cut short?); resume "
                "from an earlier checkpoint with --resume_from_checkpoint <its directory>."
            )


def check_same_run(checkpoint, saved, cfg, task_name, world):
    """The same task and model, batched the same way: otherwise the position in the data and the
    optimizer state would not mean what they meant."""
    model_id = cfg.model_name_or_path or cfg.config_name
    origin = f"{saved.get('model')} ({saved.get('task')})"
    if (saved.get("task"), saved.get("model")) != (task_name, model_id):
        raise UsageError(f"Checkpoint {checkpoint} is from {origin}, not {model_id}.")
    saved_batching = (saved.get("global_batch"), saved.get("accumulation"))
    batching = (cfg.per_device_train_batch_size * world, cfg.gradient_accumulation_steps)
    if saved_batching != batching:
        # Any process count resumes exactly with the same global batch (docs/reliability.md).
        batch, accumulation = saved_batching
        if batch % world == 0:
            how = f"on {world} process(es) with per_device_train_batch_size {batch // world}"
        else:
            how = f"on a process count that divides {batch} (the batch per process times it)"
        raise UsageError(
            f"Checkpoint {checkpoint} was trained with {batch} samples per micro-batch over all "
            f"processes and accumulation {accumulation}; to keep its place in the data, resume "
            f"{how} and gradient_accumulation_steps {accumulation}."
        )


def load_checkpoint(accelerator, checkpoint, saved, total_updates):
    """Weights, optimizer, grad scaler and every process's RNG state back from `checkpoint`;
    returns the run's state there, its schedule spanning `total_updates`."""
    if saved["global_step"] > total_updates:
        raise UsageError(
            f"Checkpoint {checkpoint} is at update {saved['global_step']}, past the "
            f"{total_updates} updates of this run; raise max_steps or num_train_epochs."
        )
    # Accelerate reads every state with torch.load(weights_only=True), which runs no code, but
    # passes over a random state it cannot read in silence: the resume would not be exact.
    rng = checkpoint / f"random_states_{accelerator.process_index}.pkl"
    try:
        if rng.is_file():
            load(rng)
        accelerator.load_state(checkpoint)
    except pickle.UnpicklingError as error:
        raise UsageError(
            f"Checkpoint {checkpoint} cannot be loaded: a file in it holds code to run, not only "
            "data; nothing of it ran. Resume from a checkpoint you trust."
        ) from error
    except Exception as error:
        # A missing file or wrong shapes: the checkpoint is unusable.
        reason = str(error).splitlines()[0]
        raise UsageError(f"Checkpoint {checkpoint} cannot be loaded: {reason}") from error
    state = TrainerState(**{**saved, "total_updates": total_updates})
    accelerator.print(
        f"Resumed from {checkpoint} at update {state.global_step} of {total_updates}."
    )
    if saved["total_updates"] != total_updates:
        before = saved["total_updates"]
        accelerator.print(f"Note: the schedule now spans {total_updates} updates, not {before}.")
    return state


def start_run(cfg, accelerator, checkpoint, resumed_step):
    """The run's first writes, once everything has loaded: clear an overwritten run, drop saves
    cut short by a kill and the metrics records a resumed run redoes, record the config, start
    the tracker; record.json says what reproduces the run."""
    output_dir = Path(cfg.output_dir)
    metrics_file = output_dir / "metrics.jsonl"
    if accelerator.is_main_process:
        try:
            output_dir.mkdir(parents=True, exist_ok=True)
            if cfg.overwrite_output_dir and not checkpoint:
                shutil.rmtree(output_dir / "checkpoints", ignore_errors=True)
                shutil.rmtree(output_dir / "final", ignore_errors=True)
                metrics_file.unlink(missing_ok=True)
                (output_dir / "eval_report.md").unlink(missing_ok=True)
            for stale in output_dir.glob("checkpoints/.tmp-*"):
                shutil.rmtree(stale)
            if metrics_file.exists():
                # A line a kill cut short is dropped: it belongs to an update this run redoes.
                lines = metrics_file.read_text().splitlines()
                records = [json.loads(line) for line in lines if line.endswith("}")]
                kept = [record for record in records if record["step"] <= resumed_step]
                # Replaced, not rewritten in place: a kill now leaves the old records or the new.
                partial = output_dir / ".tmp-metrics.jsonl"
                partial.write_text("".join(json.dumps(record) + "\n" for record in kept))
                os.replace(partial, metrics_file)
            # Every run has its records file, even one resumed at its last update into a new
            # output_dir (it logs nothing): the model card and the curves read it.
            metrics_file.touch()
            (output_dir / "config.yaml").write_text(to_yaml(cfg))
            record.write(cfg, accelerator, output_dir)
        except OSError as error:
            # A full disk: the sentence that names the last checkpoint.
            cannot = no_space(error, output_dir) or UsageError(
                f"Cannot write to output_dir {output_dir}: {error.strerror}."
            )
            raise cannot from None
    accelerator.wait_for_everyone()
    # Trackers reject None values.
    tracked = {name: str(value) if value is None else value for name, value in vars(cfg).items()}
    accelerator.init_trackers(cfg.run_name, config=tracked)


def save_checkpoint(accelerator, cfg, state):
    """Every process writes its part under a temporary name; a rename makes it complete. Then
    rotation deletes the oldest beyond save_total_limit, never the newest or the best."""
    root = Path(cfg.output_dir, "checkpoints")
    final = root / f"{PREFIX}{state.global_step}"
    partial = root / f".tmp-{PREFIX}{state.global_step}"
    check_space_for(final, accelerator)
    # A collective under FSDP/DeepSpeed: all processes call it.
    with removed_if_cut_short(partial, cfg.output_dir):
        accelerator.save_state(partial)
    # Each process writes its own RNG state; all of them must be in before the rename.
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (partial / "config.yaml").write_text(to_yaml(cfg))
        for name in ("record.json", "record.diff"):
            if Path(cfg.output_dir, name).exists():
                shutil.copy(Path(cfg.output_dir, name), partial / name)
        # Every file's size, checked on resume (check_intact): a copy cut short is named.
        files = sorted(path for path in partial.rglob("*") if path.is_file())
        sizes = {str(path.relative_to(partial)): path.stat().st_size for path in files}
        (partial / "manifest.json").write_text(json.dumps(sizes, indent=1))
        # Written last: its presence marks the checkpoint complete.
        (partial / "trainer_state.json").write_text(json.dumps(dataclasses.asdict(state), indent=2))
        # The same step saved by an earlier attempt.
        shutil.rmtree(final, ignore_errors=True)
        partial.rename(final)
        if cfg.push_to_hub and cfg.hub_strategy == "every_save":
            hub.push(cfg, final, path_in_repo="last-checkpoint")
        if cfg.save_total_limit:
            complete = checkpoint_dirs(cfg.output_dir)
            keep = {complete[-1], root / f"{PREFIX}{state.best_step}"}
            deletable = [path for path in complete if path not in keep]
            excess = len(complete) - max(cfg.save_total_limit, len(keep & set(complete)))
            for path in deletable[: max(0, excess)]:
                shutil.rmtree(path)
    accelerator.wait_for_everyone()


@contextlib.contextmanager
def removed_if_cut_short(partial, output_dir):
    """A save that fails takes its temporary directory with it: the space comes back, and the
    last complete checkpoint stays what `latest` finds. A full disk becomes one sentence."""
    try:
        yield
    except Exception as error:
        sentence = no_space(error, output_dir, partial)  # judged before the space comes back
        shutil.rmtree(partial, ignore_errors=True)
        if sentence:
            raise sentence from error
        raise


def no_space(error, output_dir, written=None):
    """If `error` is a write that failed on a full disk (it says so, or, as torch.save's does
    not, the disk of what was `written` has under 1 MiB left), a UsageError that names the
    run's last complete checkpoint; else None."""
    written = Path(written or output_dir)
    existing = next(p for p in [written, *written.parents] if p.exists())
    said = getattr(error, "errno", None) == errno.ENOSPC or "No space left" in str(error)
    if not (said or shutil.disk_usage(existing).free < 2**20):
        return None
    found = checkpoint_dirs(output_dir)
    return UsageError(
        f"No space left on device ({str(error).splitlines()[0][:120]}); the last complete "
        f"checkpoint is {found[-1] if found else 'none'}. Free space, then resume with "
        "--resume_from_checkpoint latest."
    )


def check_space_for(checkpoint, accelerator):
    """Stop before a save that cannot fit: the free space against the size of the last
    checkpoint (from its manifest), decided on the main process for all."""
    previous = checkpoint_dirs(checkpoint.parent.parent)
    needed, free = 0, 0
    if accelerator.is_main_process and previous and (previous[-1] / "manifest.json").is_file():
        sizes = json.loads((previous[-1] / "manifest.json").read_text())
        needed, free = sum(sizes.values()), shutil.disk_usage(previous[-1]).free
    short = accelerator.reduce(torch.tensor(float(needed > free), device=accelerator.device))
    if short.item() > 0:
        raise UsageError(
            f"No space left for checkpoint {checkpoint.name}: {free / 2**20:,.1f} MiB free, the "
            f"last checkpoint took {needed / 2**20:,.1f} MiB; the last complete checkpoint is "
            f"{previous[-1] if previous else 'none'}. Free space, then resume with "
            "--resume_from_checkpoint latest."
        )


def readable_as_umask_allows(directory):
    """safetensors writes its files through a private temporary file (mode 0600): final/'s
    weights would be the one file others cannot read. Every file gets the mode a new file gets."""
    umask = os.umask(0)
    os.umask(umask)
    for path in Path(directory).rglob("*"):
        if path.is_file():
            path.chmod(0o666 & ~umask)


def save_final_model(accelerator, model, tokenizer, cfg, task):
    """final/ appears complete or not at all: written under a temporary name, then renamed.
    What it holds is the task's to say (`task`: your task module, its save_model)."""
    # A collective under FSDP/DeepSpeed: every process takes part.
    state_dict = accelerator.get_state_dict(model)
    if accelerator.is_main_process:
        final, partial = Path(cfg.output_dir, "final"), Path(cfg.output_dir, ".tmp-final")
        shutil.rmtree(partial, ignore_errors=True)
        unwrapped = accelerator.unwrap_model(model, keep_torch_compile=False)
        # Under torch_compile the names carry the compiled wrapper's prefix; final/ must not.
        state_dict = {name.removeprefix("_orig_mod."): value for name, value in state_dict.items()}
        # A tied weight (GPT-2's output embedding is its input one) is one parameter under two
        # names. FSDP2 gathers it twice, as two tensors save_pretrained cannot tell are one:
        # keep the first name only, as saving the model's own state does.
        every = {name for name, _ in unwrapped.named_parameters(remove_duplicate=False)}
        tied = every - {name for name, _ in unwrapped.named_parameters()}
        state_dict = {name: value for name, value in state_dict.items() if name not in tied}
        with removed_if_cut_short(partial, cfg.output_dir):
            task.save_model(unwrapped, tokenizer, partial, state_dict)
            hub.write_card(cfg, partial, task.NAME, task.model_class())
            if cfg.merge_adapter:  # after the adapter: merging changes the weights in place
                lora.save_merged(unwrapped, tokenizer, partial / "merged", task.save_model)
        readable_as_umask_allows(partial)
        shutil.rmtree(final, ignore_errors=True)
        partial.rename(final)
        if cfg.push_to_hub:
            hub.push(cfg, final)
    accelerator.wait_for_everyone()
