{% set extension = cookiecutter.dataset.rsplit(".", 1)[-1] %}
{% set source = "sample" if cookiecutter.dataset == "sample" else ("file" if extension in ["csv", "json", "jsonl", "parquet", "txt"] else "hub") %}
"""Every option of train.py, in one dataclass, with its default and a one-line help.

Values come from YAML files (`--config configs/x.yaml`, later files win), then from the
command line (`--key value` or `--key=value`). Names follow transformers' `TrainingArguments`
where the concept is the same, so Trainer habits carry over. `python train.py --help` lists all.

A bad value stops the run before any work with one sentence that names the option.
"""

import dataclasses
import difflib
import math
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml


class UsageError(Exception):
    """A problem the user can fix; train.py prints its one-sentence message and exits with 2."""


def opt(default, help_text):
    return field(default=default, metadata={"help": help_text})


@dataclass
class TrainConfig:
    # --- model -------------------------------------------------------------------------------
    model_name_or_path: str | None = opt(
{% if cookiecutter.model == "tiny" %}
        None,
{% else %}
        {{ cookiecutter.model | tojson }},
{% endif %}
        "Pretrained weights: a hub id or a local directory. Empty: train from config_name.",
    )
    config_name: str | None = opt(
        "assets/{{ cookiecutter.task }}/tiny-model",
        "Model config (hub id or directory) for a randomly initialised model; used only "
        "when model_name_or_path is empty.",
    )
    tokenizer_name: str | None = opt(None, "Tokenizer; defaults to the model's or config's.")
    trust_remote_code: bool = opt(False, "Run model code from the hub. Only for code you trust.")
    gradient_checkpointing: bool = opt(False, "Recompute activations in backward: less memory.")
    torch_compile: bool = opt(False, "Compile the model with torch.compile.")
    # --- data --------------------------------------------------------------------------------
    dataset_name: str | None = opt(
        {{ cookiecutter.dataset | tojson if source == "hub" else "None" }},
        "A dataset on the hub (or a local dataset directory). Overrides train_file.",
    )
    dataset_config_name: str | None = opt(None, "The dataset's configuration name, if any.")
    train_file: str | None = opt(
{% if source == "sample" %}
        "assets/{{ cookiecutter.task }}/data/train.jsonl",
{% elif source == "file" %}
        {{ cookiecutter.dataset | tojson }},
{% else %}
        None,
{% endif %}
        "Local training file: csv, json, jsonl, parquet or txt.",
    )
    validation_file: str | None = opt(
{% if source == "sample" %}
        "assets/{{ cookiecutter.task }}/data/validation.jsonl",
{% else %}
        None,
{% endif %}
        "Local validation file; without one, validation_split_percentage of train is held out.",
    )
    validation_split_percentage: int = opt(5, "Percent of train held out when no validation split.")
    text_column_name: str = opt("text", "Column holding the text.")
{% if cookiecutter.task == "text-classification" %}
    label_column_name: str = opt("label", "Column holding the label (strings or integers).")
    max_seq_length: int = opt(128, "Texts are truncated to this many tokens.")
{% endif %}
{% if cookiecutter.task == "causal-lm" %}
    block_size: int = opt(128, "Tokens per training sequence.")
    packing: bool = opt(
        True,
        "Concatenate texts and cut them into block_size blocks (pre-training). false: one text "
        "per sequence, truncated and padded, padding excluded from the loss (fine-tuning).",
    )
{% endif %}
    max_train_samples: int | None = opt(None, "Use only the first N training rows (debugging).")
    max_eval_samples: int | None = opt(None, "Use only the first N validation rows.")
    preprocessing_num_workers: int | None = opt(None, "Processes for tokenization (datasets.map).")
    dataloader_num_workers: int = opt(0, "Data loader worker processes.")
    # --- optimisation ------------------------------------------------------------------------
    output_dir: str = opt("outputs/default", "Where config, metrics, checkpoints and final/ go.")
    overwrite_output_dir: bool = opt(False, "Start afresh even if output_dir has checkpoints.")
    num_train_epochs: float = opt(3.0, "Epochs to train; ignored when max_steps > 0.")
    max_steps: int = opt(-1, "Optimizer updates to run; -1 means use num_train_epochs.")
    per_device_train_batch_size: int = opt(8, "Sequences per process per micro-batch.")
    per_device_eval_batch_size: int = opt(16, "Sequences per process per eval batch.")
    gradient_accumulation_steps: int = opt(1, "Micro-batches per optimizer update.")
    learning_rate: float = opt(5e-4, "Peak learning rate.")
    weight_decay: float = opt(0.0, "Decoupled weight decay (never on biases or norm weights).")
    adam_beta1: float = opt(0.9, "AdamW beta1.")
    adam_beta2: float = opt(0.999, "AdamW beta2.")
    adam_epsilon: float = opt(1e-8, "AdamW epsilon.")
    optim: str = opt("adamw", "Optimizer: adamw, adafactor or sgd.")
    max_grad_norm: float = opt(1.0, "Clip the gradient norm to this; 0 disables clipping.")
    lr_scheduler_type: str = opt(
        "linear",
        "linear, cosine, cosine_with_restarts, polynomial, constant or constant_with_warmup.",
    )
    warmup_steps: int = opt(0, "Updates of linear warmup; overrides warmup_ratio when > 0.")
    warmup_ratio: float = opt(0.0, "Fraction of all updates used for warmup.")
    lr_num_cycles: int = opt(1, "Hard restarts for cosine_with_restarts.")
    lr_end: float = opt(1e-7, "Final learning rate of the polynomial schedule.")
    lr_power: float = opt(1.0, "Power of the polynomial schedule.")
    mixed_precision: str = opt("{{ cookiecutter.mixed_precision }}", "no, fp16 or bf16.")
    on_nonfinite: str = opt(
        "stop",
        "A NaN/inf loss or grad norm: 'stop' the run (the last good checkpoint stays), or "
        "'skip' the update and count it (costs one device sync per update).",
    )
    # --- evaluation, checkpoints, logging ----------------------------------------------------
    eval_strategy: str = opt("epoch", "When to evaluate: no, steps or epoch.")
    eval_steps: int = opt(500, "Evaluate every N updates (eval_strategy=steps).")
{% if cookiecutter.task == "text-classification" %}
    metrics: str = opt(
        "metrics/classification",
        "Comma-separated evaluate metrics: local module directories (offline) or hub names.",
    )
{% endif %}
    save_strategy: str = opt("epoch", "When to checkpoint: no, steps or epoch.")
    save_steps: int = opt(500, "Checkpoint every N updates (save_strategy=steps).")
    save_total_limit: int | None = opt(None, "Keep at most N checkpoints; the best and the newest are always kept.")
    load_best_model_at_end: bool = opt(False, "Save the best checkpoint's model as final/.")
    metric_for_best_model: str = opt("eval_loss", "Metric that decides the best checkpoint.")
    greater_is_better: bool | None = opt(None, "Default: false for *loss metrics, else true.")
    early_stopping_patience: int | None = opt(
        None, "Stop after N evaluations without improvement of metric_for_best_model."
    )
    resume_from_checkpoint: str | None = opt(
        None, "A checkpoint directory, or 'latest' (newest in output_dir/checkpoints)."
    )
    logging_steps: int = opt(10, "Log every N updates (loss is the mean over those N).")
    peak_tflops: float | None = opt(None, "Peak TFLOP/s of one accelerator (989 for H100 bf16): logs mfu.")
    report_to: str = opt("{{ cookiecutter.tracker }}", "Tracker: none, tensorboard, wandb or mlflow.")
    run_name: str | None = opt(None, "Run name for the tracker; defaults to output_dir's name.")
    seed: int = opt(42, "Seed for model initialisation and dropout.")
    data_seed: int | None = opt(None, "Seed for data order; defaults to seed.")
    debug: bool = opt(False, "Show full tracebacks instead of one-sentence errors.")


CHOICES = {
    "optim": ("adamw", "adafactor", "sgd"),
    "lr_scheduler_type": (
        "linear",
        "cosine",
        "cosine_with_restarts",
        "polynomial",
        "constant",
        "constant_with_warmup",
    ),
    "mixed_precision": ("no", "fp16", "bf16"),
    "on_nonfinite": ("stop", "skip"),
    "eval_strategy": ("no", "steps", "epoch"),
    "save_strategy": ("no", "steps", "epoch"),
    "report_to": ("none", "tensorboard", "wandb", "mlflow"),
}
POSITIVE = (
    "per_device_train_batch_size",
    "per_device_eval_batch_size",
    "gradient_accumulation_steps",
    "logging_steps",
    "eval_steps",
    "save_steps",
{% if cookiecutter.task == "causal-lm" %}
    "block_size",
{% else %}
    "max_seq_length",
{% endif %}
    "save_total_limit",
    "max_train_samples",
    "max_eval_samples",
    "early_stopping_patience",
    "lr_num_cycles",
    "peak_tflops",
)
NON_NEGATIVE = (
    "learning_rate",
    "weight_decay",
    "adam_epsilon",
    "max_grad_norm",
    "warmup_steps",
    "num_train_epochs",
    "dataloader_num_workers",
    "lr_end",
)
FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}
TYPES = typing.get_type_hints(TrainConfig)


def coerce(name, value):
    """Turn a YAML or command-line value into the option's type, or raise UsageError."""
    kind = TYPES[name]
    if typing.get_origin(kind) in (typing.Union, types.UnionType):  # "X | None"
        if value is None or (isinstance(value, str) and value.lower() in ("", "null", "none")):
            return None
        kind = next(arg for arg in typing.get_args(kind) if arg is not type(None))
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lstrip("-").isdigit():
            return int(value)
    elif kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        try:  # YAML 1.1 reads "5e-4" as a string, so accept numeric strings.
            return float(value) if isinstance(value, str) else None
        except ValueError:
            pass
    elif kind is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
    type_name = getattr(kind, "__name__", str(kind))
    raise UsageError(f"Option {name} expects {type_name}, got {value!r}.")


def check_known(name):
    if name not in FIELDS:
        close = difflib.get_close_matches(name, FIELDS, n=1)
        hint = f" Did you mean {close[0]}?" if close else " See --help for the list."
        raise UsageError(f"Unknown option {name}.{hint}")


def load_yaml(path):
    try:
        values = yaml.safe_load(Path(path).read_text())
    except OSError as error:
        raise UsageError(f"Cannot read config file {path}: {error.strerror}.") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise UsageError(f"Config file {path} is not valid YAML{where}.") from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise UsageError(f"Config file {path} must hold a mapping of option: value.")
    return values


def print_help():
    print("usage: train.py [--config FILE.yaml ...] [--option value ...]\n\noptions:")
    for name, spec in FIELDS.items():
        kind = str(TYPES[name]).replace("typing.", "").replace("<class '", "").replace("'>", "")
        print(f"  --{name} ({kind}, default {spec.default!r})\n      {spec.metadata['help']}")


def parse_args(argv):
    """YAML files in order, then --key value overrides; returns a validated TrainConfig."""
    files, overrides = [], {}
    args = list(argv)
    while args:
        arg = args.pop(0)
        if arg in ("-h", "--help"):
            print_help()
            sys.exit(0)
        if not arg.startswith("--"):
            raise UsageError(f"Unexpected argument {arg!r}: options look like --name value.")
        name, has_value, value = arg[2:].partition("=")
        name = name.replace("-", "_")
        if not has_value:
            if not args:
                raise UsageError(f"Option --{name} needs a value.")
            value = args.pop(0)
        if name == "config":
            files.append(value)
        else:
            check_known(name)
            overrides[name] = value
    values = {}
    for path in files:
        values.update(load_yaml(path))
    values.update(overrides)
    for name in values:
        check_known(name)
    cfg = TrainConfig(**{name: coerce(name, value) for name, value in values.items()})
    return validate(cfg)


def validate(cfg):
    """Reject impossible values and incompatible combinations, one sentence each."""
    for name, choices in CHOICES.items():
        if getattr(cfg, name) not in choices:
            raise UsageError(f"Option {name} must be one of {', '.join(choices)}.")
    for name in POSITIVE:
        value = getattr(cfg, name)
        if value is not None and value <= 0:
            raise UsageError(f"Option {name} must be positive, got {value}.")
    for name in NON_NEGATIVE:
        if getattr(cfg, name) < 0:
            raise UsageError(f"Option {name} must not be negative, got {getattr(cfg, name)}.")
    if not 0 <= cfg.warmup_ratio < 1:
        raise UsageError("Option warmup_ratio must be in [0, 1).")
    if not 0 < cfg.validation_split_percentage < 100:
        raise UsageError("Option validation_split_percentage must be between 1 and 99.")
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
        raise UsageError("load_best_model_at_end and early_stopping_patience need an eval_strategy.")
    if cfg.load_best_model_at_end and cfg.save_strategy != cfg.eval_strategy:
        raise UsageError("load_best_model_at_end needs save_strategy equal to eval_strategy.")
    if cfg.load_best_model_at_end and cfg.save_strategy == "steps" and cfg.save_steps % cfg.eval_steps:
        raise UsageError("load_best_model_at_end needs save_steps to be a multiple of eval_steps.")
    if not cfg.metric_for_best_model.startswith("eval_"):
        raise UsageError("Option metric_for_best_model must name an eval_ metric, e.g. eval_loss.")
    if cfg.lr_scheduler_type == "constant" and (cfg.warmup_steps or cfg.warmup_ratio):
        raise UsageError("lr_scheduler_type=constant has no warmup; use constant_with_warmup.")
    if cfg.mixed_precision == "fp16" and cfg.optim == "adafactor":
        raise UsageError("optim=adafactor does not support mixed_precision=fp16; use bf16 or no.")
    if cfg.greater_is_better is None:
        cfg.greater_is_better = not cfg.metric_for_best_model.endswith("loss")
    if cfg.data_seed is None:
        cfg.data_seed = cfg.seed
    if cfg.run_name is None:
        cfg.run_name = Path(cfg.output_dir).name
    if not math.isfinite(cfg.learning_rate):
        raise UsageError("Option learning_rate must be a finite number.")
    return cfg


def to_yaml(cfg):
    return yaml.safe_dump(dataclasses.asdict(cfg), sort_keys=False)
