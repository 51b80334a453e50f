"""The causal-lm task: next-token prediction with a GPT-style model, for pre-training (packed
blocks) or fine-tuning (one text per sequence).

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

import itertools
import math
from dataclasses import dataclass
from typing import Literal

import torch.nn.functional as F

from trainkit import lm_loss, pretrained
from trainkit.options import UsageError, option

NAME = "causal-lm"
# Data files are read by the datasets library (data.py): no format of its own.
FILE_READERS = {}


def model_class():
    """The class that loads final/ (imported here: `--help` needs no transformers)."""
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM


@dataclass
class Options:
    text_column_name: str = option("text", "Column holding the text.")
    block_size: int = option(128, "Tokens per training sequence.", above=0)
    packing: bool = option(
        True,
        "Concatenate texts and cut them into block_size blocks (pre-training). false: one text "
        "per sequence, truncated and padded, padding excluded from the loss (fine-tuning).",
    )
    streaming: bool = option(
        False,
        "Read the training data as a stream, tokenized and packed as it is read: for corpora "
        "larger than the disk or the memory; trains by max_steps (streaming.py).",
    )
    loss_type: Literal["nll", "chunked_nll"] = option(
        "nll",
        "chunked_nll: the same loss without holding the logits of every position, a (tokens x "
        "vocabulary) tensor; slower, for large vocabularies (lm_loss.py).",
    )


def data_columns(cfg):
    return {"text_column_name": cfg.text_column_name}


def load_tokenizer_and_config(cfg):
    tokenizer, config = pretrained.load_tokenizer_and_config(cfg, length_option="block_size")
    if config.is_encoder_decoder:
        name = cfg.model_name_or_path or cfg.config_name
        raise UsageError(
            f"{name} is an encoder-decoder model ({config.model_type}); causal-lm needs a "
            "decoder-only model such as GPT-2 (a seq2seq project trains this one)."
        )
    return tokenizer, config


def eval_metric_names(cfg):
    return ["eval_loss", "eval_perplexity"]


def prepare_datasets(cfg, raw, tokenizer):
    tokenize = tokenize_function(cfg, tokenizer)
    # Split by split: each keeps only the tokens, whatever other columns its file has.
    train, validation = (
        raw[split].map(
            tokenize,
            batched=True,
            remove_columns=raw[split].column_names,
            num_proc=cfg.preprocessing_num_workers,
        )
        for split in ("train", "validation")
    )
    return train, validation, None


def tokenize_function(cfg, tokenizer):
    """Rows of text to training sequences, 1,000 rows at a time (datasets' batched map), for the
    datasets on disk and for streaming=true (streaming.py) alike."""
    # datasets caches map() by hashing tokenize and what it reads. It reads plain values, not cfg,
    # so a change of learning_rate or output_dir reuses the cached tokens.
    text = cfg.text_column_name
    block = cfg.block_size
    packing = cfg.packing
    eos = tokenizer.eos_token_id

    def tokenize(rows):
        texts = [t for t in rows[text] if t and t.strip()]
        if not packing:
            return {"input_ids": tokenizer(texts, truncation=True, max_length=block)["input_ids"]}
        # Texts joined with EOS between them and cut into full blocks; the short tail is dropped.
        documents = [ids + [eos] for ids in tokenizer(texts)["input_ids"]]
        stream = list(itertools.chain.from_iterable(documents))
        usable = len(stream) // block * block
        return {"input_ids": [stream[i : i + block] for i in range(0, usable, block)]}

    return tokenize


def collate(cfg, rows, tokenizer, epoch):
    batch = tokenizer.pad([{"input_ids": row["input_ids"]} for row in rows], return_tensors="pt")
    # Position t predicts token t + 1, so the labels are the inputs shifted left by one. Shifting
    # the labels here, not the logits in the loss, spares a copy of the (batch, length, vocab)
    # logits. Padding and the last position have nothing to predict: -100.
    targets = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    batch["labels"] = F.pad(targets[:, 1:], (0, 1), value=-100)
    return batch


def build_model(cfg, config, label_names):
    model = pretrained.load_model(model_class(), cfg, config)
    lm_loss.check(cfg.loss_type, model)
    return model


def target_counts(batch):
    return (batch["labels"] != -100).sum(1)


def count_tokens(batch):
    return int(batch["attention_mask"].sum())


def summed_losses(cfg, model, batch):
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    return lm_loss.summed_losses(cfg.loss_type, model, batch["labels"], **inputs)


def train_metrics(accelerator):
    return {}


def eval_predictions(cfg, model, logits, batch):
    return {}


def eval_scores(cfg, eval_loss, gathered, label_names, tokenizer):
    # exp overflows above ~709: a diverged model reports a huge, finite perplexity.
    return {"eval_loss": eval_loss, "eval_perplexity": math.exp(min(eval_loss, 700.0))}


def save_model(model, tokenizer, directory, state_dict):
    pretrained.save_model(model, tokenizer, directory, state_dict)


def predict(cfg, model, inputs, tokenizer, generation):
    """Each text continued: what the model generates after it."""
    texts = [row if isinstance(row, str) else row[cfg.text_column_name] for row in inputs]
    # Padded on the left, so that every text's continuation follows its last token.
    batch = tokenizer(texts, padding=True, padding_side="left", return_tensors="pt")
    batch = batch.to(model.device)
    prompt = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    generated = model.generate(**prompt, **generation, pad_token_id=tokenizer.pad_token_id)
    new = generated[:, batch["input_ids"].shape[1] :]
    return [{"generated": text} for text in tokenizer.batch_decode(new, skip_special_tokens=True)]
