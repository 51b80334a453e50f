"""The custom task: your own torch.nn.Module (model.py) trained by the same loop. It starts as
an MLP that classifies the rows of a table (csv, jsonl, parquet) from their numeric columns.

train.py knows no task: it uses the names below, in this order, and nothing else of this
module. A new task is a folder with a task.py that defines the same names (and its tests).

    NAME, model_class()                  the task's name (recorded in checkpoints) and the
                                         class that loads final/ (model.py's Model)
    Options                              the task's options, joined with the loop's in train.py
    FILE_READERS                         {file ending: reader} for data files the datasets
                                         library cannot read ({} for none)
    load_tokenizer_and_config(cfg)       -> (tokenizer, model config); cheap, so checked first
    eval_metric_names(cfg)               what evaluation reports, checked before training
    data_columns(cfg)                    {option: column} the task reads, checked on loading
    prepare_datasets(cfg, raw, tokenizer)
                                         -> (train, validation, label_names): model inputs
    collate(cfg, rows, tokenizer, epoch) -> a batch of tensors whose "labels" hold -100 wherever
                                            there is nothing to predict; `epoch` is None in
                                            evaluation
    build_model(cfg, config, label_names)
                                         -> the model: pretrained weights or fresh from config
    target_counts(batch)                 -> each sample's number of targets (LongTensor [batch])
    count_tokens(batch)                  -> input positions in the batch, for throughput and MFU
    summed_losses(cfg, model, batch)     -> (each sample's loss summed over its targets, logits)
    train_metrics(accelerator)           -> what the task logs beside the loss ({} for none)
    eval_predictions(cfg, model, logits, batch)
                                         -> per-sample tensors evaluation gathers ({} for none);
                                            `model` is unwrapped, so it can generate
    eval_scores(cfg, eval_loss, gathered, label_names, tokenizer)
                                         -> {"eval_loss": ..., "eval_<metric>": ...}
    save_model(model, tokenizer, directory, state_dict)
                                         what final/ holds
    predict(cfg, model, inputs, tokenizer, generation)
                                         -> for predict.py, one dict per input (a row of the
                                            training format, or a plain string): what the
                                            model says

There is no tokenizer: preparing the data records the feature columns and their training mean
and standard deviation in the model config, which becomes model.py's constructor arguments
(config.json in final/). So the one dict is returned as both tokenizer and config.

Why losses come back as per-sample sums with target counts, not means: an update's loss is the
mean over every target of its k micro-batches on every process. Sums add up across micro-batches
and processes and are divided once by the total count; a mean of means would weight a short
micro-batch like a full one, so accumulation and process count would change the numbers. Here
every sample has one target.
"""

import functools
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from model import Model
from trainkit.options import UsageError, option

NAME = "custom"
# Data files are read by the datasets library (data.py): no format of its own.
FILE_READERS = {}


def model_class():
    """The class that loads final/: yours, in model.py."""
    return Model


@dataclass
class Options:
    feature_columns: str = option(
        "auto", "Comma-separated numeric input columns; auto: every column but the label."
    )
    label_column_name: str = option("label", "Column holding the class (strings or integers).")
    metrics: str = option(
        "metrics/classification",
        "Comma-separated evaluate metrics: local module directories (offline) or hub names.",
        path=True,
    )


def named_features(cfg):
    """The feature columns the option names; [] for auto (every column but the label)."""
    if cfg.feature_columns == "auto":
        return []
    return [name.strip() for name in cfg.feature_columns.split(",")]


def data_columns(cfg):
    return {
        "label_column_name": cfg.label_column_name,
        **{f"feature_columns[{i}]": name for i, name in enumerate(named_features(cfg))},
    }


def model_directory(name):
    """A local directory, or a hub repository downloaded to one: the same code path for both."""
    if Path(name).is_dir():
        return Path(name)
    if name.startswith(("/", ".", "~")):
        raise UsageError(f"Model {name} is not a local directory.")
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(name))
    except Exception as error:  # offline, unknown repository, malformed name
        raise UsageError(
            f"Could not load {name}: not a model directory, nor reachable on the hub."
        ) from error


def load_tokenizer_and_config(cfg):
    for name in ("tokenizer_name", "trust_remote_code", "gradient_checkpointing"):
        if getattr(cfg, name):
            raise UsageError(f"Option {name} applies to transformers models, not to model.py.")
    directory = model_directory(cfg.model_name_or_path or cfg.config_name)
    try:
        config = json.loads((directory / "config.json").read_text())
    except (OSError, ValueError) as error:
        raise UsageError(f"{directory} holds no readable config.json for model.py.") from error
    return config, config


@functools.cache
def load_metric(names):
    # evaluate is imported only when a run evaluates: it is slow to import.
    import evaluate

    paths = [
        str(Path(name).resolve()) if Path(name).is_dir() else name for name in names.split(",")
    ]
    return evaluate.combine(paths)


def eval_metric_names(cfg):
    # Three classes, so a metric that only handles two fails now, not at the first evaluation.
    scores = load_metric(cfg.metrics).compute(predictions=[0, 1, 2], references=[0, 1, 2])
    return ["eval_loss", *(f"eval_{name}" for name in scores)]


def numeric_table(split, columns, where):
    """The columns of `split` as a float64 matrix, with a sentence for text or missing values."""
    for column in columns:
        kind = getattr(split.features[column], "dtype", "list")
        if not (kind == "bool" or kind.startswith(("int", "uint", "float"))):
            raise UsageError(
                f"Column {column!r} of the {where} data holds {kind}, not numbers; list the "
                "numeric columns in feature_columns."
            )
    table = np.stack([np.asarray(split[column], dtype=np.float64) for column in columns], 1)
    missing = np.argwhere(~np.isfinite(table))
    if len(missing):
        row, column = missing[0]
        raise UsageError(f"Row {row} of the {where} data has no number in {columns[column]!r}.")
    return table


def prepare_datasets(cfg, raw, tokenizer):
    import datasets

    config, label = tokenizer, cfg.label_column_name
    every = [name for name in raw["train"].column_names if name != label]
    columns = named_features(cfg) or every
    # A config saved by this project (final/) carries the statistics its weights were trained
    # with: they stay. A fresh config gets this training data's below.
    fitted = "feature_names" in config
    if fitted and config["feature_names"] != columns:
        raise UsageError(
            f"{cfg.model_name_or_path} reads columns {config['feature_names']}, not {columns}."
        )
    # data.py named rows without a label, and validation labels training lacks.
    label_names = sorted(raw["train"].unique(label))
    label_ids = {name: i for i, name in enumerate(label_names)}
    if isinstance(raw["train"].features[label], datasets.ClassLabel):
        # The rows already hold the ids of the ClassLabel's names.
        label_names = raw["train"].features[label].names
        label_ids = {i: i for i in range(len(label_names))}
    tables = {name: numeric_table(raw[name], columns, name) for name in ("train", "validation")}
    if not fitted:
        # Recorded in the model config, which build_model turns into the model: model.py
        # standardizes its inputs itself. A constant column keeps scale 1 (no division by 0).
        train = tables["train"]
        config["feature_names"] = columns
        config["feature_mean"] = train.mean(0).tolist()
        config["feature_std"] = np.where(np.ptp(train, 0) > 0, train.std(0), 1.0).tolist()
    prepared = {
        name: datasets.Dataset.from_dict(
            {
                "features": table.astype(np.float32),
                "labels": [label_ids[value] for value in raw[name][label]],
            }
        )
        for name, table in tables.items()
    }
    return prepared["train"], prepared["validation"], label_names


def collate(cfg, rows, tokenizer, epoch):
    return {
        "features": torch.tensor([row["features"] for row in rows]),
        "labels": torch.tensor([row["labels"] for row in rows]),
    }


def build_model(cfg, config, label_names):
    names = [str(name) for name in label_names]
    if not cfg.model_name_or_path:
        return Model(**{**config, "label_names": names})
    directory = model_directory(cfg.model_name_or_path)
    if "label_names" not in config or not (directory / "model.safetensors").is_file():
        raise UsageError(
            f"{cfg.model_name_or_path} holds no trained model (a run's final/); a config alone "
            "goes to config_name."
        )
    if config["label_names"] != names:
        raise UsageError(
            f"{cfg.model_name_or_path} has labels {config['label_names']} but the data has {names}."
        )
    return Model.from_pretrained(directory)


def target_counts(batch):
    return torch.ones_like(batch["labels"])


def count_tokens(batch):
    # One input position per sample: MFU then counts 6 x parameters FLOPs per sample.
    return len(batch["labels"])


def summed_losses(cfg, model, batch):
    logits = model(batch["features"])
    return F.cross_entropy(logits.float(), batch["labels"], reduction="none"), logits


def train_metrics(accelerator):
    return {}


def eval_predictions(cfg, model, logits, batch):
    return {"predictions": logits.argmax(-1), "references": batch["labels"]}


def eval_scores(cfg, eval_loss, gathered, label_names, tokenizer):
    scores = load_metric(cfg.metrics).compute(**gathered)
    return {"eval_loss": eval_loss, **{f"eval_{name}": value for name, value in scores.items()}}


def save_model(model, tokenizer, directory, state_dict):
    model.save_pretrained(directory, state_dict=state_dict)


def predict(cfg, model, inputs, tokenizer, generation):
    """Rows of the training format (plain strings: comma-separated numbers, in the order of
    the model's feature_names)."""
    names = model.config["feature_names"]
    table = [
        [float(x) for x in row.split(",")] if isinstance(row, str) else [row[n] for n in names]
        for row in inputs
    ]
    device = next(model.parameters()).device
    logits = model(torch.tensor(table, dtype=torch.float64, device=device))
    return labelled(logits.float().softmax(-1), model.config["label_names"])


def labelled(probabilities, names):
    """Per row of class probabilities: the label, its probability, and every label's."""
    return [
        {
            "label": names[int(row.argmax())],
            "score": row.max().item(),
            "probabilities": dict(zip(names, row.tolist(), strict=True)),
        }
        for row in probabilities
    ]
