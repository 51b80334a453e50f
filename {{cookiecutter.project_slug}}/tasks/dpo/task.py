"""The dpo task: preference tuning of a causal LM on chosen and rejected completions (Direct
Preference Optimization, with the IPO and hinge losses as options). Options, data formats and
logged names follow TRL's DPOConfig and DPOTrainer.

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
                                         ({} here: the columns decide the format, pairs.py)
    prepare_datasets(cfg, raw, tokenizer)
                                         -> (train, validation, label_names): tokenized datasets
    collate(cfg, rows, tokenizer, epoch) -> a batch of tensors whose "labels" hold -100 wherever
                                            there is nothing to predict; `epoch` is None in
                                            evaluation
    build_model(cfg, config, label_names)
                                         -> the model: pretrained weights or fresh from config
    target_counts(batch)                 -> each sample's number of targets (LongTensor [batch])
    count_tokens(batch)                  -> input positions in the batch, for throughput and MFU
    summed_losses(cfg, model, batch)     -> (each sample's loss summed over its targets, what
                                            eval_predictions reads: here each pair's log
                                            probabilities, not logits)
    train_metrics(accelerator)           -> what the task logs beside the loss ({} for none)
    eval_predictions(cfg, model, logits, batch)
                                         -> per-sample tensors evaluation gathers ({} for none)
    eval_scores(cfg, eval_loss, gathered, label_names, tokenizer)
                                         -> {"eval_loss": ..., "eval_<metric>": ...}
    save_model(model, tokenizer, directory, state_dict)
                                         what final/ holds
    predict(cfg, model, inputs, tokenizer, generation)
                                         -> for predict.py, one dict per input: which completion
                                            of a pair the model prefers, or its answer

A sample here is a pair, and its loss is one number: the pair is its own single target, so the
loop's mean over targets is the mean over pairs, whatever the accumulation and process count.

The reference is the starting weights, frozen (build_model): a copy, the base with adapters off
(use_peft), or precomputed log probabilities. Never checkpointed: a resume rebuilds it.
"""

import copy
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from accelerate.utils import extract_model_from_parallel

import chat
from trainkit import pairs, pretrained, reference
from trainkit.options import UsageError, option

NAME = "dpo"
# Data files are read by the datasets library (data.py): no format of its own.
FILE_READERS = {}
# The frozen reference model (build_model), when there is one. Not an attribute of the policy:
# checkpoints, the optimizer and DDP would then take it for part of the model.
REFERENCE = {}
# Sums over the pairs trained on since the last log, for train_metrics: kept on the device, so
# no update waits for them.
TRAINED = {}
# The reward metrics, in TRL's names: logged as means over pairs, in training and evaluation
# (with eval_), in this order (reward_terms).
REWARD_NAMES = ["rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins"]
REWARD_NAMES += ["logps/chosen", "logps/rejected"]


def model_class():
    """The class that loads final/ (imported here: `--help` needs no transformers)."""
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM


@dataclass
class Options:
    # TRL's names and defaults (DPOConfig); rpo_alpha and max_prompt_length are older TRL's.
    beta: float = option(
        0.1, "How far from the reference the model may move: higher, less.", above=0
    )
    loss_type: Literal["sigmoid", "ipo", "hinge"] = option(
        "sigmoid", "sigmoid: DPO. ipo: IPO (on per-token log ratios; beta is its tau). hinge: SLiC."
    )
    label_smoothing: float = option(
        0.0, "sigmoid: the share of pairs taken as mislabelled (cDPO).", at_least=0, below=0.5
    )
    rpo_alpha: float = option(
        0.0, "Weight of the chosen answer's mean token NLL in each pair's loss (RPO).", at_least=0
    )
    max_length: int = option(1024, "Tokens of prompt and completion, each sequence.", above=0)
    max_prompt_length: int | None = option(None, "Keep a prompt's last N tokens.", above=0)
    truncation_mode: Literal["keep_start", "keep_end"] = option(
        "keep_start", "keep_start: cut a long sequence's end. keep_end: its prompt's start."
    )
    precompute_ref_log_probs: bool = option(
        False, "The reference's log probabilities once, cached with the data: no reference model."
    )
    ref_model_name_or_path: str | None = option(None, "A reference other than the start.")
    disable_dropout: bool = option(True, "No dropout: the policy's start equals the reference.")
    chat_template_path: str | None = option(None, "A Jinja chat template file (see sft).")


def data_columns(cfg):
    return {}


def load_tokenizer_and_config(cfg):
    if cfg.label_smoothing and cfg.loss_type != "sigmoid":
        raise UsageError(f"label_smoothing is sigmoid's (conservative DPO), not {cfg.loss_type}'s.")
    tokenizer, config = pretrained.load_decoder_tokenizer_and_config(cfg, NAME)
    reference.check_same_tokenizer(cfg, tokenizer)  # a ref_model_name_or_path's
    return tokenizer, config


def eval_metric_names(cfg):
    return ["eval_loss", *(f"eval_{name}" for name in REWARD_NAMES)]


def prepare_datasets(cfg, raw, tokenizer):
    prepared = pairs.prepare(
        raw, tokenizer, cfg.max_length, cfg.max_prompt_length, cfg.truncation_mode,
        cfg.preprocessing_num_workers,
    )  # fmt: skip
    if cfg.precompute_ref_log_probs:
        prepared = reference.with_reference_logps(cfg, prepared, load_tokenizer_and_config)
    return prepared["train"], prepared["validation"], None


def collate(cfg, rows, tokenizer, epoch):
    """input_ids, attention_mask and labels of shape (pairs, 2, length): chosen, then rejected;
    labels are -100 but on the completion's tokens (pairs.py). ref_logps where precomputed."""
    return pairs.collate(rows, tokenizer.pad_token_id)


def build_model(cfg, config, label_names):
    """The policy, and its reference: a frozen copy, the policy itself with adapters off
    (use_peft), another model (ref_model_name_or_path), or none in memory (precomputed)."""
    model = reference.starting_model(cfg, config)
    REFERENCE.clear()
    TRAINED.clear()
    start = cfg.model_name_or_path or cfg.config_name
    # Recorded in config.yaml: predict.py, scoring final/ in place of the starting weights,
    # builds the reference the run had.
    cfg.ref_model_name_or_path = cfg.ref_model_name_or_path or start
    if cfg.precompute_ref_log_probs:
        return model
    if cfg.ref_model_name_or_path != start:
        REFERENCE["model"] = reference.starting_model(cfg, config, cfg.ref_model_name_or_path)
    elif not cfg.use_peft:
        REFERENCE["model"] = copy.deepcopy(model)
    if "model" in REFERENCE:
        REFERENCE["model"].eval().requires_grad_(False)
    return model


def target_counts(batch):
    return torch.ones(len(batch["labels"]), dtype=torch.long)


def count_tokens(batch):
    return int(batch["attention_mask"].sum())


@torch.no_grad()
def reference_logps(cfg, model, batch):
    """The reference's completion log probabilities: precomputed with the data, the frozen
    model's, or the policy's with its adapters off (use_peft)."""
    if "ref_logps" in batch:
        return batch["ref_logps"]
    if "model" in REFERENCE:
        return reference.frozen_logps(cfg, REFERENCE["model"], batch)
    if not cfg.use_peft:
        raise RuntimeError(
            "No reference model: build_model makes it, or precompute_ref_log_probs brings its "
            "log probabilities with the data."
        )
    with extract_model_from_parallel(model).disable_adapter():
        return reference.completion_logps(model, batch)


def pair_losses(cfg, logps, ref_logps, batch):
    """Each pair's loss, as TRL's DPOTrainer computes it, from the (pairs, 2) log probabilities of
    the policy and the reference."""
    ratios = logps - ref_logps  # log pi/pi_ref of chosen and rejected
    if cfg.loss_type == "ipo":  # on per-token ratios, as TRL (with IPO's authors) normalizes
        ratios = ratios / (batch["labels"] != -100).sum(-1).clamp(min=1)
    delta = ratios[:, 0] - ratios[:, 1]
    if cfg.loss_type == "sigmoid":
        smoothing = cfg.label_smoothing
        losses = -(1 - smoothing) * F.logsigmoid(cfg.beta * delta)
        losses -= smoothing * F.logsigmoid(-cfg.beta * delta)
    elif cfg.loss_type == "hinge":
        losses = torch.relu(1 - cfg.beta * delta)
    else:
        losses = (delta - 1 / (2 * cfg.beta)) ** 2
    if cfg.rpo_alpha:  # the chosen completion's mean token NLL
        chosen_tokens = (batch["labels"][:, 0] != -100).sum(-1)
        losses = losses - cfg.rpo_alpha * logps[:, 0] / chosen_tokens
    return losses


def summed_losses(cfg, model, batch):
    """(each pair's loss, its log probabilities [policy chosen, rejected, reference chosen,
    rejected] for evaluation's rewards). In training, also the sums train_metrics logs."""
    ref_logps = reference_logps(cfg, model, batch)
    logps = reference.completion_logps(model, batch)
    losses = pair_losses(cfg, logps, ref_logps, batch)
    pair_logps = torch.cat([logps.detach(), ref_logps.to(logps.dtype)], dim=1)
    if model.training:
        terms = reward_terms(cfg, pair_logps)
        sums = torch.cat([terms.sum(0), terms.new_tensor([len(terms)])])
        TRAINED["sums"] = TRAINED.get("sums", 0) + sums
    return losses, pair_logps


def train_metrics(accelerator):
    """The training pairs' rewards since the last log, over every process (TRL's names)."""
    sums = accelerator.reduce(TRAINED.pop("sums"), "sum")
    means = (sums[:-1] / sums[-1]).tolist()
    return dict(zip(REWARD_NAMES, means, strict=True))


def eval_predictions(cfg, model, logits, batch):
    return {"logps": logits}


def reward_terms(cfg, logps):
    """(pairs, 6) from (pairs, 4) log probabilities, in REWARD_NAMES' order: a reward is beta
    times the log ratio of policy to reference; a pair counts as accurate when its chosen
    reward is higher."""
    chosen = cfg.beta * (logps[:, 0] - logps[:, 2])
    rejected = cfg.beta * (logps[:, 1] - logps[:, 3])
    accurate = (chosen > rejected).to(logps.dtype)
    return torch.stack([chosen, rejected, accurate, chosen - rejected, logps[:, 0], logps[:, 1]], 1)


def eval_scores(cfg, eval_loss, gathered, label_names, tokenizer):
    means = reward_terms(cfg, torch.tensor(gathered["logps"], dtype=torch.float64)).mean(0)
    names = [f"eval_{name}" for name in REWARD_NAMES]
    scores = dict(zip(names, means.tolist(), strict=True))
    return {"eval_loss": eval_loss, **scores}


def save_model(model, tokenizer, directory, state_dict):
    # The tokenizer carries the chat template (chat_template_path's too): final/ chats as trained.
    pretrained.save_model(model, tokenizer, directory, state_dict)


def predict(cfg, model, inputs, tokenizer, generation):
    """A pair (prompt, chosen, rejected, in any training format) gets the completion the model
    prefers, by DPO's implicit reward: beta times its log ratio to the run's reference (margin:
    chosen's reward minus rejected's), and both log probabilities. Anything else goes to
    chat.py for an answer."""
    if not REFERENCE and not cfg.use_peft:  # precomputed in training: needed now
        path = cfg.ref_model_name_or_path
        REFERENCE["model"] = reference.starting_model(cfg, None, path).eval().to(model.device)
    said = []
    for row in inputs:
        if not (isinstance(row, dict) and "chosen" in row and "rejected" in row):
            said.extend(chat.predict(model, [row], tokenizer, generation))
            continue
        pair = pairs.one_pair(row, tokenizer, cfg.max_length, cfg.max_prompt_length)
        batch = {k: v.to(model.device) for k, v in collate(cfg, [pair], tokenizer, None).items()}
        with torch.no_grad():
            logps = [reference.completion_logps(model, batch), reference_logps(cfg, model, batch)]
        chosen, rejected, _, margin, *policy = reward_terms(cfg, torch.cat(logps, 1))[0].tolist()
        preferred = "chosen" if margin >= 0 else "rejected"
        said.append({"preferred": preferred, "margin": margin, "rewards": [chosen, rejected]})
        said[-1]["logps"] = policy  # the model's own, summed over each completion's tokens
    return said
