{% set extension = "." ~ cookiecutter.dataset.rsplit(".", 1)[-1] %}
{% set source = "sample" if cookiecutter.dataset == "sample" else ("file" if extension in cookiecutter._data_files else "hub") %}
"""The loop's options, each declared once, and the checks of combinations that cannot work.

One line per option: its type (a `Literal[...]` lists the choices), default, help and bounds;
--help, type checks, choices and bounds derive from it (cli.py reads YAML files and the command
line). task.py declares the task's options the same way. Names follow transformers'
TrainingArguments where the concept is the same, so Trainer habits carry over.

Why a parser of our own (cli.py, about 150 lines) and not a library: transformers'
HfArgumentParser reads one YAML file or the command line, not files layered with overrides, and
argparse under it silently accepts abbreviations (`--learn` sets learning_rate) and answers
errors with usage blocks; tyro and jsonargparse layer files well but add a dependency, nested
flag syntax and multi-line error reports. What users need here (layered YAML, `--k v`, typo
hints, one-sentence errors, --help) is small enough to own and read.
"""

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
import yaml


class UsageError(Exception):
    """A problem the user can fix; train.py prints its one-sentence message and exits with 2."""


def option(default, help, *, at_least=None, above=None, below=None, path=False):
    """One option: its default, one line of help, the bounds of its value (inclusive `at_least`,
    exclusive `above` and `below`), and whether its default is a path in the project."""
    bounds = {"at_least": at_least, "above": above, "below": below}
    return field(default=default, metadata={"help": help, "path": path, **bounds})


@dataclass
class LoopOptions:
    # --- model -------------------------------------------------------------------------------
    model_name_or_path: str | None = option(
        {{ "None" if cookiecutter.model == "tiny" else cookiecutter.model | tojson }},
        "Pretrained weights: a hub id or a local directory. Empty: train from config_name.",
    )
    config_name: str | None = option(
        "assets/{{ cookiecutter.task }}/tiny-model",
        "Model config (hub id or directory) to build a fresh model from, without weights.",
        path=True,
    )
    tokenizer_name: str | None = option(None, "Tokenizer; defaults to the model's or config's.")
    trust_remote_code: bool = option(False, "Run model code from the hub. Only for code you trust.")
    gradient_checkpointing: bool = option(False, "Recompute activations in backward: less memory.")
    torch_compile: bool = option(False, "Compile the model with torch.compile.")
    # --- data --------------------------------------------------------------------------------
    dataset_name: str | None = option(
        {{ cookiecutter.dataset | tojson if source == "hub" else "None" }},
        "A dataset on the hub (or a local dataset directory). Overrides train_file.",
    )
    dataset_config_name: str | None = option(None, "The dataset's configuration name, if any.")
    train_file: str | None = option(
{% if source == "sample" %}
        "assets/{{ cookiecutter.task }}/data/train.jsonl",
{% elif source == "file" %}
        {# A relative answer counts from the folder the project was created in: its parent. #}
        {{ (cookiecutter.dataset if cookiecutter.dataset.startswith("/") else "../" ~ cookiecutter.dataset) | tojson }},
{% else %}
        None,
{% endif %}
        "Local training file: {{ cookiecutter._data_files | join(', ') }}.",
        path=True,
    )
    validation_file: str | None = option(
        {{ ('"assets/' ~ cookiecutter.task ~ '/data/validation.jsonl"') if source == "sample" else "None" }},
        "Local validation file; without one, validation_split_percentage of train is held out.",
        path=True,
    )
    validation_split_percentage: int = option(5, "% of train held out.", at_least=1, below=100)
    bad_rows: Literal["error", "skip"] = option(
        "error", "A row whose text or label is null or blank: stop, naming it; or skip and count."
    )
    max_train_samples: int | None = option(None, "Use only the first N training rows.", above=0)
    max_eval_samples: int | None = option(None, "Use only the first N validation rows.", above=0)
    preprocessing_num_workers: int | None = option(None, "Tokenization processes.", above=0)
    dataloader_num_workers: int = option(0, "Data loader worker processes.", at_least=0)
    # --- optimisation ------------------------------------------------------------------------
    output_dir: str = option("outputs/default", "Where checkpoints, final/ go.", path=True)
    overwrite_output_dir: bool = option(False, "Start afresh even if output_dir holds a run.")
    num_train_epochs: float = option(3.0, "Epochs; ignored when max_steps > 0.", at_least=0)
    max_steps: int = option(-1, "Optimizer updates to run; -1 means use num_train_epochs.")
    per_device_train_batch_size: int = option(8, "Sequences per process per micro-batch.", above=0)
    per_device_eval_batch_size: int = option(16, "Sequences per process per eval batch.", above=0)
    gradient_accumulation_steps: int = option(1, "Micro-batches per optimizer update.", above=0)
    learning_rate: float = option(5e-4, "Peak learning rate.", at_least=0)
    layerwise_lr_decay: float = option(
        1.0, "Each layer below the top: the rate times this per layer (embeddings lowest).", above=0
    )
    head_learning_rate: float | None = option(
        None, "Peak rate of what lies outside the pretrained base model (a fresh head).", at_least=0
    )
    weight_decay: float = option(0.0, "Weight decay (not on biases, norm weights).", at_least=0)
    adam_beta1: float = option(0.9, "AdamW beta1.", at_least=0, below=1)
    adam_beta2: float = option(0.999, "AdamW beta2.", at_least=0, below=1)
    adam_epsilon: float = option(1e-8, "AdamW epsilon.", at_least=0)
    optim: Literal["adamw", "adafactor", "sgd"] = option("adamw", "The optimizer.")
    max_grad_norm: float = option(1.0, "Clip the gradient norm; 0: no clipping.", at_least=0)
    lr_scheduler_type: Literal[
        "linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup"
    ] = option("linear", "How the learning rate moves after warmup.")
    warmup_steps: int = option(0, "Linear warmup updates; beats warmup_ratio.", at_least=0)
    warmup_ratio: float = option(0.0, "Fraction of updates to warm up.", at_least=0, below=1)
    lr_num_cycles: int = option(1, "Hard restarts for cosine_with_restarts.", above=0)
    lr_end: float = option(1e-7, "Final rate of the polynomial schedule.", at_least=0)
    lr_power: float = option(1.0, "Power of the polynomial schedule.")
    mixed_precision: Literal["no", "fp16", "bf16"] = option("{{ cookiecutter.mixed_precision }}", "bf16 needs recent hardware.")
    on_nonfinite: Literal["stop", "skip"] = option(
        "stop", "NaN/inf loss or grad norm: stop the run, or skip the update (a sync per update)."
    )
    # --- LoRA adapters (lora.py) --------------------------------------------------------------
    use_peft: bool = option(False, "Train LoRA adapters (and a fresh head), the rest frozen.")
    lora_r: int = option(16, "Rank of each adapter.", above=0)
    lora_alpha: int = option(32, "Adapter scale: its update is multiplied by lora_alpha / lora_r.")
    lora_dropout: float = option(0.05, "Dropout on the adapters' input.", at_least=0, below=1)
    lora_target_modules: str | None = option(
        None, "Comma-separated module names, or all-linear. Default: PEFT's for the architecture."
    )
    lora_modules_to_save: str | None = option(
        None, "Modules trained in full (comma-separated). Default: those outside the base model."
    )
    merge_adapter: bool = option(False, "Also write final/merged/: adapters merged into weights.")
    load_in_4bit: bool = option(
        False, "QLoRA: the frozen weights in 4 bits (bitsandbytes NF4, CUDA GPUs only)."
    )
    # --- evaluation, checkpoints, logging ----------------------------------------------------
    eval_strategy: Literal["no", "steps", "epoch"] = option("epoch", "When to evaluate.")
    eval_steps: int = option(500, "Evaluate every N updates (eval_strategy=steps).", above=0)
    save_strategy: Literal["no", "steps", "epoch"] = option("epoch", "When to checkpoint.")
    save_steps: int = option(500, "Checkpoint every N updates (save_strategy=steps).", above=0)
    save_total_limit: int | None = option(None, "Keep N checkpoints, always the best.", above=0)
    load_best_model_at_end: bool = option(False, "Save the best checkpoint's model as final/.")
    metric_for_best_model: str = option("eval_loss", "Metric that decides the best checkpoint.")
    greater_is_better: bool | None = option(None, "Default: false for *loss metrics, else true.")
    early_stopping_patience: int | None = option(None, "Stop after N evals not better.", above=0)
    resume_from_checkpoint: str | None = option(
        None, "A checkpoint directory, or 'latest' (newest in output_dir/checkpoints)."
    )
    logging_steps: int = option(10, "Log every N updates (loss: their mean).", above=0)
    peak_tflops: float | None = option(None, "One device's peak TFLOP/s: logs mfu.", above=0)
    report_to: Literal["none", "tensorboard", "wandb", "mlflow"] = option(
        "{{ cookiecutter.tracker }}", "Experiment tracker; metrics.jsonl is always written."
    )
    run_name: str | None = option(None, "Run name for the tracker; defaults to output_dir's name.")
    plot_curves: bool = option(True, "Draw curves.png at the end (matplotlib; about 1.5 s).")
    # --- sharing (hub.py) ---------------------------------------------------------------------
    push_to_hub: bool = option(False, "Upload final/ (and its model card) to the Hugging Face Hub.")
    hub_model_id: str | None = option(None, "user/name on the hub; default: output_dir's name.")
    hub_strategy: Literal["end", "every_save"] = option(
        "end", "end: final/ once. every_save: also each checkpoint, as last-checkpoint/."
    )
    hub_private_repo: bool = option(True, "Create the hub repository private.")
    seed: int = option(42, "Seed for model initialisation and dropout.")
    data_seed: int | None = option(None, "Seed for data order; defaults to seed.")
    debug: bool = option(False, "Show full tracebacks instead of one-sentence errors.")


def bounds_problem(value, meta):
    """What is wrong with a number given its declared bounds, or None."""
    low, above, below = meta["at_least"], meta["above"], meta["below"]
    if above is not None and not value > above:
        return "must be positive" if above == 0 else f"must be above {above}"
    if low is not None and not value >= low:
        return "must not be negative" if low == 0 else f"must be at least {low}"
    if below is not None and not value < below:
        return f"must be below {below}"
    return None


def check(cfg):
    """Reject values out of their bounds and combinations that cannot work, one sentence each."""
    for spec in dataclasses.fields(cfg):
        value = getattr(cfg, spec.name)
        if value is not None and (problem := bounds_problem(value, spec.metadata)):
            raise UsageError(f"Option {spec.name} {problem}, got {value}.")
    if not math.isfinite(cfg.learning_rate):
        raise UsageError("Option learning_rate must be a finite number.")
    if cfg.merge_adapter and not cfg.use_peft:
        raise UsageError("merge_adapter merges LoRA adapters: set use_peft=true.")
    if cfg.load_in_4bit and not cfg.use_peft:
        raise UsageError("load_in_4bit freezes the weights in 4 bits: set use_peft=true.")
    if cfg.load_in_4bit and cfg.merge_adapter:
        raise UsageError("merge_adapter would merge into rounded 4-bit weights (load_in_4bit).")
    if cfg.load_in_4bit and not torch.cuda.is_available():
        raise UsageError("load_in_4bit needs a CUDA GPU (for bitsandbytes); none is here.")
    if cfg.head_learning_rate is not None and cfg.learning_rate == 0:
        raise UsageError("head_learning_rate needs learning_rate above 0: it is scaled from it.")
    if cfg.max_steps == 0 or cfg.max_steps < -1:
        raise UsageError("Option max_steps must be positive, or -1 to use num_train_epochs.")
    if cfg.max_steps == -1 and cfg.num_train_epochs == 0:
        raise UsageError("Option num_train_epochs must be positive when max_steps is -1.")
    if cfg.max_steps > 0 and cfg.warmup_steps >= cfg.max_steps:
        raise UsageError("Option warmup_steps must be smaller than max_steps.")
    if not (cfg.model_name_or_path or cfg.config_name):
        raise UsageError("Set model_name_or_path (pretrained) or config_name (from scratch).")
    if not (cfg.dataset_name or cfg.train_file):
        raise UsageError("Set dataset_name (hub) or train_file (local file).")
    if cfg.eval_strategy == "no" and (cfg.load_best_model_at_end or cfg.early_stopping_patience):
        raise UsageError("Set eval_strategy for load_best_model_at_end or early_stopping_patience.")
    if cfg.load_best_model_at_end and cfg.save_strategy != cfg.eval_strategy:
        raise UsageError("load_best_model_at_end needs save_strategy equal to eval_strategy.")
    steps_apart = cfg.save_strategy == "steps" and cfg.save_steps % cfg.eval_steps
    if cfg.load_best_model_at_end and steps_apart:
        raise UsageError("load_best_model_at_end needs save_steps to be a multiple of eval_steps.")
    if not cfg.metric_for_best_model.startswith("eval_"):
        raise UsageError("Option metric_for_best_model must name an eval_ metric, e.g. eval_loss.")
    if cfg.lr_scheduler_type == "constant" and (cfg.warmup_steps or cfg.warmup_ratio):
        raise UsageError("lr_scheduler_type=constant has no warmup; use constant_with_warmup.")
    if cfg.mixed_precision == "fp16" and cfg.optim == "adafactor":
        raise UsageError("optim=adafactor does not support mixed_precision=fp16; use bf16 or no.")


def check_metric_for_best_model(cfg, names):
    """Checked before training, not at the first evaluation hours later."""
    if cfg.metric_for_best_model not in names:
        name = cfg.metric_for_best_model
        raise UsageError(f"metric_for_best_model {name} is not one of {', '.join(names)}.")


def fill_derived_defaults(cfg):
    """Options whose default depends on another option."""
    if cfg.greater_is_better is None:
        cfg.greater_is_better = not cfg.metric_for_best_model.endswith("loss")
    if cfg.data_seed is None:
        cfg.data_seed = cfg.seed
    if cfg.run_name is None:
        cfg.run_name = Path(cfg.output_dir).name
    return cfg


def to_yaml(cfg):
    return yaml.safe_dump(dataclasses.asdict(cfg), sort_keys=False)
