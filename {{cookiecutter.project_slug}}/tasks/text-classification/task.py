"""The text-classification task: one label per text, a sequence-classification head on an
encoder (BERT-style) or any model with a `ForSequenceClassification` class.

train.py knows no task: it uses the names below, in this order, and nothing else of this
module. A new task is a folder with a task.py that defines the same names (and its tests).

    NAME, model_class()                  the task's name (recorded in checkpoints) and the
                                         class that loads final/ (a function: importing
                                         task.py needs no transformers)
    Options                              the task's options, joined with the loop's in train.py
    FILE_READERS                         {file ending: reader} for data files the datasets
                                         library cannot read ({} for none)
    load_tokenizer_and_config(cfg)       -> (tokenizer, model config); cheap, so checked first
    eval_metric_names(cfg)               what evaluation reports, checked before training
    data_columns(cfg)                    {option: column} the task reads, checked on loading
    prepare_datasets(cfg, raw, tokenizer)
                                         -> (train, validation, label_names): tokenized datasets
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

Why losses come back as per-sample sums with target counts, not means: an update's loss is the
mean over every target of its k micro-batches on every process. Sums add up across micro-batches
and processes and are divided once by the total count; a mean of means would weight a short
micro-batch like a full one, so accumulation and process count would change the numbers.
"""

import functools
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from trainkit import pretrained
from trainkit.options import UsageError, option

NAME = "text-classification"
# Data files are read by the datasets library (data.py): no format of its own.
FILE_READERS = {}


def model_class():
    """The class that loads final/ (imported here: `--help` needs no transformers)."""
    from transformers import AutoModelForSequenceClassification

    return AutoModelForSequenceClassification


@dataclass
class Options:
    text_column_name: str = option("text", "Column holding the text.")
    label_column_name: str = option("label", "Column holding the label (strings or integers).")
    max_seq_length: int = option(128, "Texts are truncated to this many tokens.", above=0)
    metrics: str = option(
        "metrics/classification",
        "Comma-separated evaluate metrics: local module directories (offline) or hub names.",
        path=True,
    )


def data_columns(cfg):
    return {"text_column_name": cfg.text_column_name, "label_column_name": cfg.label_column_name}


def load_tokenizer_and_config(cfg):
    return pretrained.load_tokenizer_and_config(cfg, length_option="max_seq_length")


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


def prepare_datasets(cfg, raw, tokenizer):
    import datasets

    label = cfg.label_column_name
    # data.py named rows without a label, and validation labels training lacks.
    # String or integer labels are mapped to ids 0..n-1 in sorted order; a ClassLabel keeps its own.
    label_names = sorted(raw["train"].unique(label))
    label_ids = {name: i for i, name in enumerate(label_names)}
    if isinstance(raw["train"].features[label], datasets.ClassLabel):
        # The rows already hold the ids of the ClassLabel's names.
        label_names = raw["train"].features[label].names
        label_ids = {i: i for i in range(len(label_names))}
    # datasets caches map() by hashing tokenize and what it reads: plain values, not cfg.
    text = cfg.text_column_name
    max_length = cfg.max_seq_length

    def tokenize(rows):
        encoded = tokenizer(rows[text], truncation=True, max_length=max_length)
        return {
            "input_ids": encoded["input_ids"],
            "labels": [label_ids[name] for name in rows[label]],
        }

    # Split by split: each keeps only the model's inputs, whatever other columns its file has.
    train, validation = (
        raw[split].map(
            tokenize,
            batched=True,
            remove_columns=raw[split].column_names,
            num_proc=cfg.preprocessing_num_workers,
        )
        for split in ("train", "validation")
    )
    return train, validation, label_names


def collate(cfg, rows, tokenizer, epoch):
    batch = tokenizer.pad([{"input_ids": row["input_ids"]} for row in rows], return_tensors="pt")
    batch["labels"] = torch.tensor([row["labels"] for row in rows])
    return batch


def build_model(cfg, config, label_names):
    heads = [
        name for name in config.architectures or [] if name.endswith("ForSequenceClassification")
    ]
    if cfg.model_name_or_path and heads and config.num_labels != len(label_names):
        raise UsageError(
            f"{cfg.model_name_or_path} has {config.num_labels} labels but the data has "
            f"{len(label_names)}."
        )
    # The label names travel with the saved model, so predictions come back as names.
    config.num_labels = len(label_names)
    config.id2label = {i: str(name) for i, name in enumerate(label_names)}
    config.label2id = {str(name): i for i, name in enumerate(label_names)}
    return pretrained.load_model(model_class(), cfg, config)


def target_counts(batch):
    return (batch["labels"] != -100).long()


def count_tokens(batch):
    return int(batch["attention_mask"].sum())


def summed_losses(cfg, model, batch):
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    return F.cross_entropy(logits.float(), batch["labels"], reduction="none"), logits


def train_metrics(accelerator):
    return {}


def eval_predictions(cfg, model, logits, batch):
    return {"predictions": logits.argmax(-1), "references": batch["labels"]}


def eval_scores(cfg, eval_loss, gathered, label_names, tokenizer):
    scores = load_metric(cfg.metrics).compute(**gathered)
    return {"eval_loss": eval_loss, **{f"eval_{name}": value for name, value in scores.items()}}


def save_model(model, tokenizer, directory, state_dict):
    pretrained.save_model(model, tokenizer, directory, state_dict)


def predict(cfg, model, inputs, tokenizer, generation):
    texts = [row if isinstance(row, str) else row[cfg.text_column_name] for row in inputs]
    batch = tokenizer(
        texts, truncation=True, max_length=cfg.max_seq_length, padding=True, return_tensors="pt"
    ).to(model.device)
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    names = [model.config.id2label[i] for i in range(model.config.num_labels)]
    return labelled(logits.float().softmax(-1), names)


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
