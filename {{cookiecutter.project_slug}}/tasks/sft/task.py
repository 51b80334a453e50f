"""The sft task: supervised fine-tuning of a causal LM on prompts and answers or conversations,
with the loss on the answers only, and packing that keeps documents apart. Options and data
formats follow TRL's SFTConfig.

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
                                         ({} here: the columns decide the format, see below)
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
micro-batch like a full one, so accumulation and process count would change the numbers. Here a
target is a token the loss trains on (an answer's token, with the masking below).

The data's columns decide its format, as in TRL (formats.py): conversations (messages),
prompt and completion, or plain text. packing.py puts documents into rows.
"""

import functools
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F

import chat
from trainkit import lm_loss, pretrained
from trainkit.formats import check_format_options, data_format, say_truncated, tokenize
from trainkit.options import UsageError, option
from trainkit.packing import check_documents_stay_apart, pack_documents

NAME = "sft"
# Data files are read by the datasets library (data.py): no format of its own.
FILE_READERS = {}
# Rows go to the model without an attention_mask on purpose (position_ids mark the documents,
# padding is a document of its own); GPT-2 would warn that padding may be attended to.
logging.getLogger("transformers.modeling_utils").addFilter(
    lambda record: "`attention_mask`" not in record.getMessage()
)


def model_class():
    """The class that loads final/ (imported here: `--help` needs no transformers)."""
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM


@dataclass
class Options:
    max_length: int = option(
        1024, "Tokens per row. Longer documents are truncated (wrapped packing cuts them).", above=0
    )
    packing: bool = option(
        True,
        "Put several documents in one row of max_length tokens instead of padding each. They "
        "never attend to each other (position_ids restart per document), so it saves compute "
        "without changing the loss.",
    )
    packing_strategy: Literal["bfd", "wrapped"] = option(
        "bfd",
        "bfd: whole documents, best-fit decreasing into rows (little padding). wrapped: joined "
        "and cut every max_length tokens (no padding; documents may be cut in two).",
    )
    completion_only_loss: bool = option(
        True, "prompt/completion data: no loss on the prompt's tokens, only the completion's."
    )
    assistant_only_loss: bool = option(
        False,
        "Conversations: loss only on the assistant's turns. Needs {% generation %} markers in "
        "the chat template. false: on every token of the conversation, as TRL does.",
    )
    dataset_text_field: str = option("text", "Plain-text data: the column holding the text.")
    chat_template_path: str | None = option(
        None, "A Jinja chat template file, for a tokenizer that has none (or to replace its own)."
    )
    loss_type: Literal["nll", "chunked_nll"] = option(
        "nll",
        "chunked_nll: the same loss without holding the logits of every position, a (tokens x "
        "vocabulary) tensor; slower, for large vocabularies (lm_loss.py).",
    )


def data_columns(cfg):
    return {}


def load_tokenizer_and_config(cfg):
    return pretrained.load_decoder_tokenizer_and_config(cfg, NAME)


def eval_metric_names(cfg):
    return ["eval_loss", "eval_perplexity"]


def prepare_datasets(cfg, raw, tokenizer):
    form = data_format(cfg, raw["train"], "train")
    check_format_options(cfg, form, tokenizer)
    # datasets caches map() by hashing these functions and what they read: plain values, not
    # cfg, so a change of learning_rate or output_dir reuses the cached tokens. It hashes another
    # module's function by name only: their files' source (`code`) makes an edit count too.
    code = "".join(Path(f.__code__.co_filename).read_text() for f in (tokenize, pack_documents))
    tokenize_rows = functools.partial(
        tokenize,
        code=code,
        form=form,
        tokenizer=tokenizer,
        text_field=cfg.dataset_text_field,
        max_length=cfg.max_length,
        # Wrapped packing cuts long documents into rows instead of truncating them.
        truncate=not (cfg.packing and cfg.packing_strategy == "wrapped"),
        completion_only=cfg.completion_only_loss,
        assistant_only=cfg.assistant_only_loss,
    )
    pack_rows = functools.partial(
        pack_documents, max_length=cfg.max_length, strategy=cfg.packing_strategy, code=code
    )
    prepared = {}
    for split, rows in raw.items():
        if data_format(cfg, rows, split) != form:
            raise UsageError(
                f"The {split} data is {data_format(cfg, rows, split)} but the train data is "
                f"{form}: give both in one format."
            )
        documents = rows.map(
            functools.partial(tokenize_rows, split=split),
            batched=True,
            with_indices=True,
            remove_columns=rows.column_names,
            num_proc=cfg.preprocessing_num_workers,
        )
        documents = say_truncated(documents, split, cfg.max_length)
        if cfg.packing:
            # Large batches pack tighter; rows of one batch never mix with the next.
            documents = documents.map(pack_rows, batched=True, batch_size=10_000)
        prepared[split] = documents
    return prepared["train"], prepared["validation"], None


def collate(cfg, rows, tokenizer, epoch):
    """input_ids and position_ids, and no attention_mask: position_ids restarting at 0 mark where
    each document begins, and transformers keeps documents apart from that. Padding goes on the
    right and counts as one more document, so nothing attends to it."""
    length = max(len(row["input_ids"]) for row in rows)
    batch = {
        name: torch.zeros(len(rows), length, dtype=torch.long)
        for name in ("input_ids", "position_ids", "loss_mask", "token_mask")
    }
    batch["input_ids"].fill_(tokenizer.pad_token_id)
    batch["position_ids"][:] = torch.arange(length)
    for i, row in enumerate(rows):
        n = len(row["input_ids"])
        batch["input_ids"][i, :n] = torch.tensor(row["input_ids"])
        batch["loss_mask"][i, :n] = torch.tensor(row["loss_mask"])
        batch["token_mask"][i, :n] = 1  # counts tokens (count_tokens); not given to the model
        if "position_ids" in row:
            batch["position_ids"][i, :n] = torch.tensor(row["position_ids"])
        batch["position_ids"][i, n:] = torch.arange(length - n)
    # Position t predicts token t + 1, if that token is of the same document and trained on.
    # The last position, and every document's last token, have nothing to predict: -100.
    positions = batch["position_ids"]
    same_document = positions[:, 1:] == positions[:, :-1] + 1
    trained = same_document & (batch["loss_mask"][:, 1:] == 1)
    targets = batch["input_ids"][:, 1:].masked_fill(~trained, -100)
    batch["labels"] = F.pad(targets, (0, 1), value=-100)
    del batch["loss_mask"]
    return batch


def build_model(cfg, config, label_names):
    model = pretrained.load_model(model_class(), cfg, config)
    if cfg.packing:
        check_documents_stay_apart(model, forward)
    lm_loss.check(cfg.loss_type, model)
    return model


def target_counts(batch):
    return (batch["labels"] != -100).sum(1)


def count_tokens(batch):
    return int(batch["token_mask"].sum())


def model_inputs(input_ids, position_ids):
    """No attention_mask and no KV cache: transformers reads document boundaries from
    position_ids only without them (with a cache, documents would silently see each other)."""
    return {"input_ids": input_ids, "position_ids": position_ids, "use_cache": False}


def forward(model, input_ids, position_ids):
    return model(**model_inputs(input_ids, position_ids)).logits


def summed_losses(cfg, model, batch):
    inputs = model_inputs(batch["input_ids"], batch["position_ids"])
    return lm_loss.summed_losses(cfg.loss_type, model, batch["labels"], **inputs)


def train_metrics(accelerator):
    return {}


def eval_predictions(cfg, model, logits, batch):
    return {}


def eval_scores(cfg, eval_loss, gathered, label_names, tokenizer):
    # exp overflows above ~709: a diverged model reports a huge, finite perplexity.
    return {"eval_loss": eval_loss, "eval_perplexity": math.exp(min(eval_loss, 700.0))}


def save_model(model, tokenizer, directory, state_dict):
    # The tokenizer carries the chat template (chat_template_path's too): final/ chats as trained.
    pretrained.save_model(model, tokenizer, directory, state_dict)


def predict(cfg, model, inputs, tokenizer, generation):
    return chat.predict(model, inputs, tokenizer, generation, cfg.dataset_text_field)
