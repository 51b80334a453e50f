"""Your options: the loop's, declared here one line each, joined with your task's (task.py) into
the Config every command reads. Change a default, add an option (and use it in train.py), or add
a check of a combination that cannot work; that is all a new option needs.

One line per option: its type (a `Literal[...]` lists the choices), default, help and bounds;
--help, type checks, choices and bounds derive from it (trainkit/cli.py reads YAML files and the
command line). Names follow transformers' TrainingArguments where the concept is the same, so
Trainer habits carry over.
"""

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

import task
from trainkit.options import UsageError, option


@dataclass
class LoopOptions:
    """The loop's options. Defaults are the bundled tiny model and sample (the generator wrote
    your answers here); configs/*.yaml and the command line override them."""

    # --- model -------------------------------------------------------------------------------
    model_name_or_path: str | None = option(
        None,
        "Pretrained weights: a hub id or a local directory. Empty: train from config_name.",
    )
    config_name: str | None = option(
        "assets/tiny-model",
        "Model config (hub id or directory) to build a fresh model from, without weights.",
        path=True,
    )
    tokenizer_name: str | None = option(None, "Tokenizer; defaults to the model's or config's.")
    trust_remote_code: bool = option(False, "Run model code from the hub. Only for code you trust.")
    gradient_checkpointing: bool = option(False, "Recompute activations in backward: less memory.")
    torch_compile: bool = option(False, "Compile the model with torch.compile.")
    # --- data --------------------------------------------------------------------------------
    dataset_name: str | None = option(
        None,
        "A dataset on the hub (or a local dataset directory). Overrides train_file.",
    )
    dataset_config_name: str | None = option(None, "The dataset's configuration name, if any.")
    train_file: str | None = option(
        "assets/data/train.jsonl",
        "Local training file: .csv, .json, .jsonl, .parquet, .txt.",
        path=True,
    )
    validation_file: str | None = option(
        "assets/data/validation.jsonl",
        "Local validation file; without one, validation_split_percentage of train is held out.",
        path=True,
    )
    validation_split_percentage: int = option(
        5,
        "% of train held out (at least 50 rows, where a quarter of the data allows).",
        at_least=1,
        below=100,
    )
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
    per_device_train_batch_size: int = option(8, "Examples per process per micro-batch.", above=0)
    per_device_eval_batch_size: int = option(16, "Examples per process per eval batch.", above=0)
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
    mixed_precision: Literal["no", "fp16", "bf16"] = option("no", "bf16 needs recent hardware.")
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
    report_to: Literal["none", "tensorboard", "wandb", "mlflow", "trackio"] = option(
        "none", "Experiment tracker; metrics.jsonl is always written."
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

    def check(self):
        """Reject combinations of options that cannot work, one sentence each (cli.py calls it once
        the values are within their bounds)."""
        if not math.isfinite(self.learning_rate):
            raise UsageError("Option learning_rate must be a finite number.")
        if self.merge_adapter and not self.use_peft:
            raise UsageError("merge_adapter merges LoRA adapters: set use_peft=true.")
        if self.load_in_4bit and not self.use_peft:
            raise UsageError("load_in_4bit freezes the weights in 4 bits: set use_peft=true.")
        if self.load_in_4bit and self.merge_adapter:
            raise UsageError("merge_adapter would merge into rounded 4-bit weights (load_in_4bit).")
        if self.load_in_4bit and not torch.cuda.is_available():
            raise UsageError("load_in_4bit needs a CUDA GPU (for bitsandbytes); none is here.")
        if self.head_learning_rate is not None and self.learning_rate == 0:
            raise UsageError(
                "head_learning_rate needs learning_rate above 0: it is scaled from it."
            )
        if self.max_steps == 0 or self.max_steps < -1:
            raise UsageError("Option max_steps must be positive, or -1 to use num_train_epochs.")
        if self.max_steps == -1 and self.num_train_epochs == 0:
            raise UsageError("Option num_train_epochs must be positive when max_steps is -1.")
        if self.max_steps > 0 and self.warmup_steps >= self.max_steps:
            raise UsageError("Option warmup_steps must be smaller than max_steps.")
        if not (self.model_name_or_path or self.config_name):
            raise UsageError("Set model_name_or_path (pretrained) or config_name (from scratch).")
        if not (self.dataset_name or self.train_file or getattr(self, "train_dir", None)):
            folders = (
                ", train_dir (a folder of class folders)" if hasattr(self, "train_dir") else ""
            )
            raise UsageError(
                f"No training data: set dataset_name (a hub dataset), train_file (a local "
                f"data file){folders} in a config file or on the command line."
            )
        if self.eval_strategy == "no" and (
            self.load_best_model_at_end or self.early_stopping_patience
        ):
            raise UsageError(
                "Set eval_strategy for load_best_model_at_end or early_stopping_patience."
            )
        if self.load_best_model_at_end and self.save_strategy != self.eval_strategy:
            raise UsageError("load_best_model_at_end needs save_strategy equal to eval_strategy.")
        steps_apart = self.save_strategy == "steps" and self.save_steps % self.eval_steps
        if self.load_best_model_at_end and steps_apart:
            raise UsageError(
                "load_best_model_at_end needs save_steps to be a multiple of eval_steps."
            )
        if not self.metric_for_best_model.startswith("eval_"):
            raise UsageError(
                "Option metric_for_best_model must name an eval_ metric, e.g. eval_loss."
            )
        if self.lr_scheduler_type == "constant" and (self.warmup_steps or self.warmup_ratio):
            raise UsageError("lr_scheduler_type=constant has no warmup; use constant_with_warmup.")
        if self.mixed_precision == "fp16" and self.optim == "adafactor":
            raise UsageError(
                "optim=adafactor does not support mixed_precision=fp16; use bf16 or no."
            )

    def fill_derived_defaults(self):
        """Options whose default depends on another option."""
        if self.greater_is_better is None:
            self.greater_is_better = not self.metric_for_best_model.endswith("loss")
        if self.data_seed is None:
            self.data_seed = self.seed
        if self.run_name is None:
            self.run_name = Path(self.output_dir).name
        return self


@dataclass
class Config(task.Options, LoopOptions):
    """Every option: the loop's (above) and the task's (task.py)."""
