"""The seq2seq task: a target text for each source text (summarization, translation), an
encoder-decoder (T5, BART family) or any model with a `ForConditionalGeneration` class. Options
and behaviour follow transformers' run_summarization.py and run_translation.py.

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
micro-batch like a full one, so accumulation and process count would change the numbers. Here a
sample's targets are its target text's tokens, so a long summary weighs more than a short one,
exactly as causal-lm weighs tokens.
"""

import functools
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from trainkit import pretrained
from trainkit.options import UsageError, option

NAME = "seq2seq"
# Data files are read by the datasets library (data.py): no format of its own.
FILE_READERS = {}
GENERATION_METRICS = ["eval_rouge1", "eval_rouge2", "eval_rougeL", "eval_bleu", "eval_chrf"]


def model_class():
    """The class that loads final/ (imported here: `--help` needs no transformers)."""
    from transformers import AutoModelForSeq2SeqLM

    return AutoModelForSeq2SeqLM


@dataclass
class Options:
    text_column: str = option("document", "Column holding the source text.")
    summary_column: str = option("summary", "Column holding the target text.")
    source_prefix: str = option("", 'Put before every source text, e.g. "summarize: " for T5.')
    max_source_length: int = option(256, "Source texts are truncated to this many tokens.", above=0)
    max_target_length: int = option(64, "Target texts are truncated to this many tokens.", above=0)
    predict_with_generate: bool = option(
        True, "Evaluate generated text too (ROUGE, BLEU, chrF), not the loss alone."
    )
    generation_max_length: int = option(64, "Most tokens generated per sample.", above=0)
    generation_num_beams: int | None = option(
        None,
        "Beams for generation; default: the model's generation config (1: greedy).",
        at_least=1,
    )


def data_columns(cfg):
    return {"text_column": cfg.text_column, "summary_column": cfg.summary_column}


def load_tokenizer_and_config(cfg):
    tokenizer, config = pretrained.load_tokenizer_and_config(cfg, length_option="max_source_length")
    if not config.is_encoder_decoder:
        name = cfg.model_name_or_path or cfg.config_name
        raise UsageError(
            f"{name} is a decoder-only model ({config.model_type}); seq2seq needs an "
            "encoder-decoder such as T5 or BART (a causal-lm project trains this one)."
        )
    return tokenizer, config


def eval_metric_names(cfg):
    return [
        "eval_loss",
        *(GENERATION_METRICS + ["eval_gen_len"] if cfg.predict_with_generate else []),
    ]


def prepare_datasets(cfg, raw, tokenizer):
    # datasets caches map() by hashing tokenize and what it reads: plain values, not cfg.
    source, target, prefix = cfg.text_column, cfg.summary_column, cfg.source_prefix
    source_length, target_length = cfg.max_source_length, cfg.max_target_length

    def tokenize(rows, indices, split):
        for i, pair in enumerate(zip(rows[source], rows[target], strict=True)):
            for column, value in zip((source, target), pair, strict=True):
                if isinstance(value, str) and value.strip():
                    continue
                found = (
                    "no text"
                    if value is None or isinstance(value, str)
                    else f"{value!r}, not text,"
                )
                raise UsageError(f"Row {indices[i]} of the {split} data has {found} in {column!r}.")
        inputs = tokenizer(
            [prefix + text for text in rows[source]], truncation=True, max_length=source_length
        )
        labels = tokenizer(text_target=rows[target], truncation=True, max_length=target_length)
        return {"input_ids": inputs["input_ids"], "labels": labels["input_ids"]}

    tokenized = {
        split: rows.map(
            functools.partial(tokenize, split=split),
            batched=True,
            with_indices=True,
            remove_columns=rows.column_names,
            num_proc=cfg.preprocessing_num_workers,
        )
        for split, rows in raw.items()
    }
    return tokenized["train"], tokenized["validation"], None


def collate(cfg, rows, tokenizer, epoch):
    batch = tokenizer.pad([{"input_ids": row["input_ids"]} for row in rows], return_tensors="pt")
    # Targets padded on the right with -100: padding is neither trained on nor scored.
    longest = max(len(row["labels"]) for row in rows)
    batch["labels"] = torch.tensor(
        [row["labels"] + [-100] * (longest - len(row["labels"])) for row in rows]
    )
    return batch


def build_model(cfg, config, label_names):
    return pretrained.load_model(model_class(), cfg, config)


def target_counts(batch):
    return (batch["labels"] != -100).sum(1)


def count_tokens(batch):
    return int(batch["attention_mask"].sum()) + int(target_counts(batch).sum())


def summed_losses(cfg, model, batch):
    # The decoder reads the target shifted right after the model's start token: the model's own
    # prepare_decoder_input_ids_from_labels (what it does when given labels, without computing
    # a loss we would not use). DDP wraps the model; torch.compile forwards the attribute.
    labels = batch["labels"]
    shift = getattr(model, "module", model).prepare_decoder_input_ids_from_labels
    logits = model(
        input_ids=batch["input_ids"],
        attention_mask=batch["attention_mask"],
        decoder_input_ids=shift(labels=labels),
    ).logits
    losses = F.cross_entropy(
        logits.float().flatten(0, 1), labels.flatten(), ignore_index=-100, reduction="none"
    )
    return losses.view(labels.shape).sum(1), logits


def train_metrics(accelerator):
    return {}


def eval_predictions(cfg, model, logits, batch):
    if not cfg.predict_with_generate:
        return {}
    # Beams and sampling as the model's generation config says unless generation_num_beams is
    # set (a checkpoint such as bart-large-cnn ships its own beam search).
    beams = {} if cfg.generation_num_beams is None else {"num_beams": cfg.generation_num_beams}
    generated = model.generate(
        input_ids=batch["input_ids"],
        attention_mask=batch["attention_mask"],
        max_new_tokens=cfg.generation_max_length,
        **beams,
    )
    # Padding (the model's pad token) becomes -100 like the targets' padding, so rows padded
    # across processes and within the batch read the same when decoded.
    return {
        "predictions": generated.masked_fill(generated == model.config.pad_token_id, -100),
        "references": batch["labels"],
    }


def decode(tokenizer, rows):
    return [
        tokenizer.decode(
            [token for token in row if token != -100], skip_special_tokens=True
        ).strip()
        for row in rows
    ]


def eval_scores(cfg, eval_loss, gathered, label_names, tokenizer):
    scores = {"eval_loss": eval_loss}
    if cfg.predict_with_generate:
        # Imported only when a run generates: ROUGE from rouge_score, BLEU and chrF from
        # sacrebleu, both offline; scores on the 0-100 scale as run_summarization.py reports.
        import sacrebleu
        from rouge_score import rouge_scorer

        predictions = decode(tokenizer, gathered["predictions"])
        references = decode(tokenizer, gathered["references"])
        scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
        rouge = [scorer.score(ref, pred) for ref, pred in zip(references, predictions, strict=True)]
        for name in ("rouge1", "rouge2", "rougeL"):
            scores[f"eval_{name}"] = 100 * sum(row[name].fmeasure for row in rouge) / len(rouge)
        scores["eval_bleu"] = sacrebleu.corpus_bleu(predictions, [references]).score
        scores["eval_chrf"] = sacrebleu.corpus_chrf(predictions, [references]).score
        lengths = [sum(token != -100 for token in row) for row in gathered["predictions"]]
        scores["eval_gen_len"] = sum(lengths) / len(lengths)
    return scores


def save_model(model, tokenizer, directory, state_dict):
    pretrained.save_model(model, tokenizer, directory, state_dict)


def predict(cfg, model, inputs, tokenizer, generation):
    texts = [row if isinstance(row, str) else row[cfg.text_column] for row in inputs]
    batch = tokenizer(
        [cfg.source_prefix + text for text in texts], truncation=True,
        max_length=cfg.max_source_length, padding=True, return_tensors="pt",
    ).to(model.device)  # fmt: skip
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    generated = model.generate(**inputs, **generation)
    texts = tokenizer.batch_decode(generated, skip_special_tokens=True)
    return [{"generated": text} for text in texts]
