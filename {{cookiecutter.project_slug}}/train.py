{% set causal = cookiecutter.task == "causal-lm" %}
"""Train a {{ cookiecutter.task }} model with an explicit Hugging Face Accelerate loop.

    python train.py --config configs/debug.yaml              # a check in seconds, on a laptop
    accelerate launch train.py --config configs/default.yaml  # 1 CPU or GPU
    accelerate launch --config_file configs/accelerate/multi_gpu.yaml train.py  # N GPUs

Reading order is execution order: small pure helpers, then train() step by step. Guarantees
(README, tests/): accumulation and process count do not change the numbers, a killed run
resumes exactly, and a checkpoint is complete or absent.
"""

import gc
import itertools
import json
import math
import os
import shutil
import signal
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import datasets
import torch
import torch.nn.functional as F
from accelerate import Accelerator
from accelerate.utils import set_seed
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
{% if causal %}
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
{% else %}
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer
{% endif %}
from transformers.optimization import Adafactor

from checkpoints import check_output_dir, checkpoint_dirs, save_checkpoint, start_run
from config import UsageError, parse_args

TASK = "{{ cookiecutter.task }}"
FILE_BUILDERS = {".csv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet", ".txt": "text"}
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # tokenizer threads + loader workers deadlock
gc.freeze()  # the imports made ~250k objects that live until exit: full collections skip them (-0.4 s start-up)


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
    return cfg.learning_rate  # constant, constant_with_warmup


def epoch_micro_batches(num_samples, epoch, cfg, num_processes, process_index):
    """This process's micro-batches (lists of sample indices) for one epoch.

    All processes draw one permutation from (data_seed, epoch), cut it into global micro-batches
    of batch size * num_processes and take every num_processes-th sample: 1 process with batch 2B
    sees what 2 processes with batch B see together, and resume skips batches by index. A last
    global batch smaller than the process count is dropped (each process needs a sample)."""
    order = torch.randperm(num_samples, generator=torch.Generator().manual_seed(cfg.data_seed + epoch))
    size = cfg.per_device_train_batch_size * num_processes
    batches = [order[start : start + size].tolist() for start in range(0, num_samples, size)]
    if len(batches[-1]) < num_processes:
        batches.pop()
    return [batch[process_index::num_processes] for batch in batches]


def forward(model, batch):
    """Each sample's summed cross-entropy, its number of targets (label tokens / labels), the logits."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
{% if causal %}
    # Token t predicts token t + 1. Shifting the labels (and padding their end with -100), not
    # slicing the logits, spares a copy of the (batch, length, vocab) logits in each direction.
    labels = F.pad(batch["labels"][:, 1:], (0, 1), value=-100)
    losses = F.cross_entropy(logits.float().flatten(0, 1), labels.flatten(), ignore_index=-100, reduction="none")
    return losses.view(labels.shape).sum(1), (labels != -100).sum(1), logits
{% else %}
    losses = F.cross_entropy(logits.float(), batch["labels"], reduction="none")
    return losses, torch.ones_like(losses, dtype=torch.long), logits
{% endif %}


def is_due(strategy, every, step, epoch_end, last):
    """Whether eval_strategy/save_strategy asks for work after this update (and after the last)."""
    if strategy == "no":
        return False
    return last or (strategy == "steps" and step % every == 0) or (strategy == "epoch" and epoch_end)


def load_raw_datasets(cfg):
    """A DatasetDict with train and validation splits, from the hub or from local files."""
    if cfg.dataset_name:
        source, load = cfg.dataset_name, lambda: datasets.load_dataset(cfg.dataset_name, cfg.dataset_config_name)
    else:
        files = {"train": cfg.train_file}
        if cfg.validation_file:
            files["validation"] = cfg.validation_file
        for path in files.values():
            if not os.access(path, os.R_OK):
                raise UsageError(f"Data file {path} does not exist or cannot be read.")
            if os.path.getsize(path) == 0:
                raise UsageError(f"Data file {path} is empty.")
        builder = FILE_BUILDERS.get(Path(cfg.train_file).suffix)
        if builder is None or {FILE_BUILDERS.get(Path(path).suffix) for path in files.values()} != {builder}:
            raise UsageError(f"Data files must all end in one of {', '.join(FILE_BUILDERS)}, not mixed.")
        source, load = cfg.train_file, lambda: datasets.load_dataset(builder, data_files=files)
    try:
        raw = load()
    except Exception as error:  # the datasets library raises many kinds; the user needs one line
        reason = (str(error) or type(error).__name__).splitlines()[0]
        raise UsageError(f"Could not load data from {source}: {reason}") from error
    if len(raw["train"]) == 0:
        raise UsageError(f"The train split of {source} is empty.")
    if "validation" not in raw:  # carve a held-out split, the same one on every run
        raw = raw["train"].train_test_split(test_size=cfg.validation_split_percentage / 100, seed=cfg.seed)
        raw["validation"] = raw.pop("test")
    for name, limit in (("train", cfg.max_train_samples), ("validation", cfg.max_eval_samples)):
        if limit is not None:
            raw[name] = raw[name].select(range(min(limit, len(raw[name]))))
    for column in [cfg.text_column_name{% if not causal %}, cfg.label_column_name{% endif %}]:
        if column not in raw["train"].column_names:
            raise UsageError(f"Column {column!r} is not in {source}; it has {raw['train'].column_names}.")
    return raw


def train(cfg):
    # 1. Processes, output directory, seed ----------------------------------------------------
    accelerator = Accelerator(
        mixed_precision=cfg.mixed_precision,
        log_with=None if cfg.report_to == "none" else cfg.report_to,
        project_dir=cfg.output_dir,
        dynamo_backend="inductor" if cfg.torch_compile else "no",
    )
    if int(os.environ.get("WORLD_SIZE", "1")) != accelerator.num_processes:
        raise UsageError(
            "The launcher started several processes but each would train alone: without GPUs, set "
            "ACCELERATE_USE_CPU=true."
        )
    if accelerator.distributed_type == "DEEPSPEED" and cfg.gradient_accumulation_steps > 1:
        raise UsageError("Under DeepSpeed set gradient_accumulation_steps=1: its engine steps on every backward.")
    device, world, rank = accelerator.device, accelerator.num_processes, accelerator.process_index
    checkpoint, saved = check_output_dir(cfg, TASK, world)  # reads only: nothing on disk changes before step 7
    set_seed(cfg.seed)

    # 2. Tokenizer and model config: cheap, so bad names and sizes fail before any data work ---
    model_id, remote = cfg.model_name_or_path or cfg.config_name, cfg.trust_remote_code
    for name in (cfg.tokenizer_name or model_id, model_id):
        if not Path(name).is_dir() and name.startswith(("/", ".", "~")):
            raise UsageError(f"Model or tokenizer {name} is not a local directory.")
    try:
        tokenizer = AutoTokenizer.from_pretrained(cfg.tokenizer_name or model_id, trust_remote_code=remote)
        model_config = AutoConfig.from_pretrained(model_id, trust_remote_code=remote)
    except (OSError, ValueError) as error:  # --debug true shows the library's full explanation
        raise UsageError(f"Could not load {model_id}: not a model directory, nor reachable on the hub.") from error
    if tokenizer.pad_token is None:  # GPT-style tokenizers have none; padding is masked anyway
        tokenizer.pad_token = tokenizer.eos_token
{% if causal %}
    eval_names = ["eval_loss", "eval_perplexity"]
{% else %}
    eval_names = ["eval_loss"]
    if cfg.eval_strategy != "no":  # evaluate is imported only when used: it adds ~1.5 s to start-up
        import evaluate

        metric = evaluate.combine([str(Path(n).resolve()) if Path(n).is_dir() else n for n in cfg.metrics.split(",")])
        eval_names += [f"eval_{name}" for name in metric.compute(predictions=[0], references=[0])]
{% endif %}
    if cfg.eval_strategy != "no" and cfg.metric_for_best_model not in eval_names:
        raise UsageError(f"metric_for_best_model {cfg.metric_for_best_model} is not one of {', '.join(eval_names)}.")
{% set length = "block_size" if causal else "max_seq_length" %}
    if cfg.{{ length }} > getattr(model_config, "max_position_embeddings", math.inf):
        limit = model_config.max_position_embeddings
        raise UsageError(f"{{ length }}={cfg.{{ length }}} exceeds the model's {limit} positions.")

    # 3. Data: load, tokenize once (cached by datasets), batch -------------------------------
    with accelerator.main_process_first():  # the main process tokenizes, the others read its cache
        raw = load_raw_datasets(cfg)
{% if causal %}
        # datasets caches map() by hashing tokenize and what it reads: plain values, not cfg, so a
        # change of learning_rate or output_dir reuses the cached tokens.
        text, block, packing = cfg.text_column_name, cfg.block_size, cfg.packing

        def tokenize(rows):
            texts = [t for t in rows[text] if t and t.strip()]
            if not packing:  # one text per sequence: the fine-tuning case
                return {"input_ids": tokenizer(texts, truncation=True, max_length=block)["input_ids"]}
            # Concatenate texts, EOS between them, and cut full blocks; the short tail is dropped.
            documents = [ids + [tokenizer.eos_token_id] for ids in tokenizer(texts)["input_ids"]]
            stream = list(itertools.chain.from_iterable(documents))
            usable = len(stream) // block * block
            return {"input_ids": [stream[i : i + block] for i in range(0, usable, block)]}

{% else %}
        # datasets caches map() by hashing tokenize and what it reads: plain values, not cfg.
        text, label, max_length = cfg.text_column_name, cfg.label_column_name, cfg.max_seq_length
        label_names = sorted(raw["train"].unique(label))  # string or integer labels, mapped to ids
        if isinstance(raw["train"].features[label], datasets.ClassLabel):
            label_names = raw["train"].features[label].names
        label_ids = {name: i for i, name in enumerate(label_names)}
        unknown = set(raw["validation"].unique(label)) - set(label_ids)
        if unknown:
            raise UsageError(f"Validation labels {sorted(unknown)} never occur in the training data.")

        def tokenize(rows):
            encoded = tokenizer(rows[text], truncation=True, max_length=max_length)
            return {"input_ids": encoded["input_ids"], "labels": [label_ids[name] for name in rows[label]]}

{% endif %}
        tokenized = raw.map(
            tokenize, batched=True, remove_columns=raw["train"].column_names, num_proc=cfg.preprocessing_num_workers
        )
    train_set, eval_set = tokenized["train"], tokenized["validation"]
    for name, split in (("train", train_set), ("validation", eval_set)):
        if len(split) < world:
            raise UsageError(f"The {name} split has {len(split)} sequences after tokenization; too few to train.")

    def collate(rows):
        batch = tokenizer.pad([{"input_ids": row["input_ids"]} for row in rows], return_tensors="pt")
{% if causal %}
        batch["labels"] = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)  # no loss on padding
{% else %}
        batch["labels"] = torch.tensor([row["labels"] for row in rows])
{% endif %}
        return batch

    loader_options = {"collate_fn": collate, "num_workers": cfg.dataloader_num_workers}
    loader_options["pin_memory"] = device.type == "cuda"  # faster host-to-GPU copies
    eval_loader = DataLoader(eval_set, batch_size=cfg.per_device_eval_batch_size, **loader_options)

    # 4. Model: pretrained weights, or a fresh model from the config --------------------------
{% if causal %}
    model_class = AutoModelForCausalLM
{% else %}
    has_head = any(name.endswith("ForSequenceClassification") for name in model_config.architectures or [])
    if cfg.model_name_or_path and has_head and model_config.num_labels != len(label_names):
        raise UsageError(f"{model_id} has {model_config.num_labels} labels but the data has {len(label_names)}.")
    model_config.num_labels = len(label_names)
    model_config.id2label = {i: str(name) for i, name in enumerate(label_names)}  # saved with the model
    model_config.label2id = {str(name): i for i, name in enumerate(label_names)}
    model_config.pad_token_id = tokenizer.pad_token_id
    model_class = AutoModelForSequenceClassification
{% endif %}
    try:
        if cfg.model_name_or_path:
            model = model_class.from_pretrained(model_id, config=model_config, trust_remote_code=remote)
        else:
            model = model_class.from_config(model_config, trust_remote_code=remote)
    except (OSError, ValueError) as error:
        raise UsageError(f"Could not load the weights of {model_id}: {str(error).splitlines()[0]}") from error
    flops_per_token = 6 * sum(p.numel() for p in model.parameters())  # forward + backward; for mfu
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})

    # 5. Optimizer: no weight decay on biases and norm weights (the 1-D parameters) ----------
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": cfg.weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
    if cfg.optim == "adamw":
        betas, fused = (cfg.adam_beta1, cfg.adam_beta2), device.type == "cuda"
        optimizer = torch.optim.AdamW(groups, lr=cfg.learning_rate, betas=betas, eps=cfg.adam_epsilon, fused=fused)
    elif cfg.optim == "adafactor":
        optimizer = Adafactor(groups, lr=cfg.learning_rate, scale_parameter=False, relative_step=False)
    else:
        optimizer = torch.optim.SGD(groups, lr=cfg.learning_rate)
    model, optimizer, eval_loader = accelerator.prepare(model, optimizer, eval_loader)
    clipped = list(model.parameters())  # listed once: walking the modules every update costs ~0.3 ms

    # 6. Schedule: updates counted from this process's shard of the data ----------------------
    accumulation = cfg.gradient_accumulation_steps
    micro_per_epoch = len(epoch_micro_batches(len(train_set), 0, cfg, world, rank))
    updates_per_epoch = math.ceil(micro_per_epoch / accumulation)  # an epoch's last update may hold fewer
    if 0 < len(train_set) % (cfg.per_device_train_batch_size * world) < world:
        accelerator.print(f"Note: each epoch skips its last {len(train_set) % world} sample(s): one per process.")
    total_updates = cfg.max_steps if cfg.max_steps > 0 else math.ceil(cfg.num_train_epochs * updates_per_epoch)
    warmup = cfg.warmup_steps or math.ceil(cfg.warmup_ratio * total_updates)
    if warmup >= total_updates:
        raise UsageError(f"Warmup ({warmup} updates) must be shorter than training ({total_updates} updates).")

    # 7. State: fresh, or everything back from a checkpoint ----------------------------------
    state = {
        "task": TASK, "model": model_id, "global_batch": cfg.per_device_train_batch_size * world,
        "accumulation": accumulation, "total_updates": total_updates,
        "global_step": 0, "epoch": 0, "batches_done": 0,
        "best_metric": None, "best_step": None, "best_checkpoint": None,
        "evals_without_improvement": 0, "skipped_updates": 0,
    }  # fmt: skip
    if checkpoint:
        try:  # weights, optimizer, grad scaler, and each process's RNG state
            accelerator.load_state(checkpoint)
        except Exception as error:  # missing file, wrong shapes: the checkpoint is unusable
            raise UsageError(f"Checkpoint {checkpoint} cannot be loaded: {str(error).splitlines()[0]}") from error
        state.update(saved, total_updates=total_updates)
        accelerator.print(f"Resumed from {checkpoint} at update {state['global_step']} of {total_updates}.")
        if saved["total_updates"] != total_updates:
            accelerator.print(f"Note: the schedule now spans {total_updates} updates, not {saved['total_updates']}.")
    start_run(cfg, accelerator, checkpoint)  # the first write: config.yaml, and --overwrite_output_dir
    metrics_file = Path(cfg.output_dir, "metrics.jsonl")
    if accelerator.is_main_process and metrics_file.exists():  # drop records the resumed run redoes
        records = [json.loads(line) for line in metrics_file.read_text().splitlines()]
        metrics_file.write_text("".join(json.dumps(r) + "\n" for r in records if r["step"] <= state["global_step"]))
    tracked = {name: str(value) if value is None else value for name, value in vars(cfg).items()}  # no None
    accelerator.init_trackers(cfg.run_name, config=tracked)

    def log(record):
        if accelerator.is_main_process:
            with metrics_file.open("a") as stream:
                stream.write(json.dumps(record) + "\n")
        accelerator.log(record, step=record["step"])

    @torch.no_grad()
    def run_evaluation():
        """Every sample counted once: gather_for_metrics drops the duplicates added to even out shards."""
        model.eval()
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        target_count = torch.zeros((), dtype=torch.long, device=device)
{% if not causal %}
        predictions, references = [], []
{% endif %}
        for batch in eval_loader:
            losses, counts, logits = forward(model, batch)
            losses, counts = accelerator.gather_for_metrics((losses, counts))
            loss_sum += losses.double().sum()
            target_count += counts.sum()
{% if not causal %}
            guesses, labels = accelerator.gather_for_metrics((logits.argmax(-1), batch["labels"]))
            predictions += guesses.tolist()
            references += labels.tolist()
{% endif %}
        model.train()
        eval_loss = (loss_sum / target_count).item()  # token-weighted: the mean over every target
{% if causal %}
        return {"eval_loss": eval_loss, "eval_perplexity": math.exp(min(eval_loss, 700.0))}
{% else %}
        scores = metric.compute(predictions=predictions, references=references)
        return {"eval_loss": eval_loss, **{f"eval_{name}": value for name, value in scores.items()}}
{% endif %}

    # 8. The loop: one optimizer update per window of k micro-batches --------------------------
    stop_signals = []  # SLURM sends SIGTERM/SIGUSR1 before it kills a job
    # Processes agree on stopping through a CPU (gloo) all-reduce each update: no GPU sync.
    stop_group = torch.distributed.new_group(backend="gloo") if world > 1 else None
    for signum in (signal.SIGTERM, signal.SIGUSR1):
        signal.signal(signum, lambda received, frame: stop_signals.append(received))
    fp16 = cfg.mixed_precision == "fp16"  # fp16 overflows are normal: the grad scaler skips those updates
    # On the device until a log, eval or save reads them; `health` is finite until a loss or grad norm is not.
    loss_sum, health = torch.zeros((), dtype=torch.float64, device=device), torch.zeros((), device=device)
    tokens = samples = logged_updates = 0  # counted from the loader's CPU tensors: no device sync
    last_good, stop_reason = state["global_step"], None
    window_start = time.perf_counter()
    progress = tqdm(total=total_updates, initial=state["global_step"], disable=not accelerator.is_local_main_process)
    model.train()
    while state["global_step"] < total_updates and stop_reason is None:
        batches = epoch_micro_batches(len(train_set), state["epoch"], cfg, world, rank)
        # Resume skips the batches already done by index: no data is loaded to be thrown away. The
        # loader gets its own generator: drawing worker seeds from the global RNG would shift dropout.
        generator = torch.Generator().manual_seed(cfg.data_seed + state["epoch"])
        remaining = batches[state["batches_done"] :]
        micro_batches = iter(DataLoader(train_set, batch_sampler=remaining, generator=generator, **loader_options))
        while state["global_step"] < total_updates and stop_reason is None:
            window = list(itertools.islice(micro_batches, accumulation))
            if not window:
                break
            tokens += sum(int(batch["attention_mask"].sum()) for batch in window)
            samples += sum(len(batch["input_ids"]) for batch in window)
            # The update's loss is the mean over all of its targets, on all processes. Each
            # micro-batch adds (its summed loss) / (targets in the update); the process count
            # compensates for DDP averaging gradients over processes.
            window = [{key: value.to(device, non_blocking=True) for key, value in batch.items()} for batch in window]
{% if causal %}
            local_targets = sum((batch["labels"][:, 1:] != -100).sum() for batch in window)  # on device: no sync
{% else %}
            local_targets = sum((batch["labels"] != -100).sum() for batch in window)  # on device: no sync
{% endif %}
            update_targets = accelerator.reduce(local_targets.float(), "sum")
            update_loss = torch.zeros((), device=device)
            for i, batch in enumerate(window):
                with accelerator.no_sync(model) if i < len(window) - 1 else nullcontext():
                    losses, _, _ = forward(model, batch)
                    loss = losses.sum() * world / update_targets
                    accelerator.backward(loss)
                update_loss += loss.detach() / world
            update_loss = accelerator.reduce(update_loss, "sum")
            grad_norm = accelerator.clip_grad_norm_(clipped, cfg.max_grad_norm or math.inf)
            learning_rate = lr_at(state["global_step"], total_updates, warmup, cfg)
            for group in optimizer.param_groups:
                group["lr"] = learning_rate
            check = update_loss if fp16 else update_loss + grad_norm  # non-finite if either is
            if cfg.on_nonfinite == "skip" and not torch.isfinite(check).item():  # the only per-update sync, opt-in
                state["skipped_updates"] += 1
            else:
                optimizer.step()
                health += check
                loss_sum += update_loss
                logged_updates += 1
            optimizer.zero_grad(set_to_none=True)
            state["global_step"] += 1
            state["batches_done"] += len(window)
            epoch_float = state["epoch"] + state["batches_done"] / len(batches)
            epoch_end = state["batches_done"] == len(batches)
            if epoch_end:
                state["epoch"], state["batches_done"] = state["epoch"] + 1, 0
            step, last = state["global_step"], state["global_step"] == total_updates
            progress.update(1)

            log_now = step % cfg.logging_steps == 0 or last
            eval_now = is_due(cfg.eval_strategy, cfg.eval_steps, step, epoch_end, last)
            save_now = is_due(cfg.save_strategy, cfg.save_steps, step, epoch_end, last)
            flag = torch.tensor(len(stop_signals))
            if world > 1:  # every process must stop at the same update
                torch.distributed.all_reduce(flag, group=stop_group)
            stop_reason = "a stop signal" if flag.item() > 0 else stop_reason

            if log_now:  # the only device->host sync on one process; several also agree on stopping above
                elapsed = time.perf_counter() - window_start
                record = {
                    "step": step, "epoch": round(epoch_float, 4), "loss": loss_sum.item() / max(1, logged_updates),
                    "learning_rate": learning_rate, "grad_norm": grad_norm.item(),
                    "tokens_per_second": round(tokens * world / elapsed, 1),
                    "samples_per_second": round(samples * world / elapsed, 1),
                    "skipped_updates": state["skipped_updates"],
                }  # fmt: skip
                if cfg.peak_tflops:  # model FLOPs utilisation of each accelerator
                    record["mfu"] = round(flops_per_token * tokens / elapsed / (cfg.peak_tflops * 1e12), 4)
                log(record)
                progress.set_postfix(loss=f"{record['loss']:.4f}")
                loss_sum.zero_()
                tokens, samples, logged_updates, window_start = 0, 0, 0, time.perf_counter()
            if log_now or eval_now or save_now or stop_reason:  # a diverged model is never checkpointed
                if not math.isfinite(health.item()):
                    good = checkpoint_dirs(cfg.output_dir)
                    raise UsageError(
                        f"The loss or gradient norm became non-finite after update {last_good}; the last good "
                        f"checkpoint is {good[-1] if good else 'none'}. Lower learning_rate, or set on_nonfinite=skip."
                    )
                last_good = step

            paused = time.perf_counter()  # eval and save time is kept out of the throughput
            if eval_now:
                scores = run_evaluation()
                log({"step": step, "epoch": round(epoch_float, 4), **scores})
                value, best = scores[cfg.metric_for_best_model], state["best_metric"]
                if best is None or (value > best if cfg.greater_is_better else value < best):
                    state.update(best_metric=value, best_step=step, evals_without_improvement=0)
                else:
                    state["evals_without_improvement"] += 1
                if cfg.early_stopping_patience and state["evals_without_improvement"] >= cfg.early_stopping_patience:
                    stop_reason = "early stopping"
            if save_now or stop_reason == "a stop signal":
                save_checkpoint(accelerator, cfg, state)  # weights, optimizer, scaler, RNG, state
            window_start += time.perf_counter() - paused
    progress.close()
    if stop_reason == "a stop signal":
        accelerator.print(f"Stopped by a signal after update {state['global_step']}; checkpoint saved.")
        accelerator.end_training()
        return

    # 9. The final model: best or last weights, loadable with from_pretrained ----------------
    if cfg.load_best_model_at_end and state["best_checkpoint"]:
        accelerator.load_state(state["best_checkpoint"])
        accelerator.print(f"Loaded the best model, {state['best_checkpoint']}.")
    state_dict = accelerator.get_state_dict(model)  # collective under FSDP/DeepSpeed
    if accelerator.is_main_process:
        final, partial = Path(cfg.output_dir, "final"), Path(cfg.output_dir, ".tmp-final")
        shutil.rmtree(partial, ignore_errors=True)
        accelerator.unwrap_model(model, keep_torch_compile=False).save_pretrained(partial, state_dict=state_dict)
        tokenizer.save_pretrained(partial)
        shutil.rmtree(final, ignore_errors=True)
        partial.rename(final)
    accelerator.wait_for_everyone()
    accelerator.print(f"Done: {state['global_step']} updates; model saved to {cfg.output_dir}/final.")
    accelerator.end_training()


def main(argv):
    cfg = None
    try:
        cfg = parse_args(argv)
        train(cfg)
    except UsageError as error:
        if cfg is not None and cfg.debug:
            raise
        if os.environ.get("RANK", "0") == "0":  # one message, not one per process
            print(f"error: {error}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main(sys.argv[1:])
