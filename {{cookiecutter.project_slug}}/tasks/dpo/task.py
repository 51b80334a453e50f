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
    train_metrics(accelerator)           -> {name: value} logged beside the training loss, over
                                            the updates since the last log ({} for none)
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

The reference model is the policy's starting weights, frozen: a copy made by build_model, the
base model with its adapters switched off under use_peft (no second copy), or nothing in memory
with precompute_ref_log_probs (its log probabilities are computed once, with the data, and cached
there). It is never checkpointed: a resumed run rebuilds it from the same weights (or the same
seed) and gets the same numbers.
"""

import copy
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from accelerate.utils import extract_model_from_parallel

import chat
from trainkit import pretrained
from trainkit.options import UsageError, option
from trainkit.pairs import data_format, drop_cut_away, tokenize

NAME = "dpo"
# Data files are read by the datasets library (data.py): no format of its own.
FILE_READERS = {}
# The frozen copy of the starting weights (build_model), when there is one. Not an attribute of
# the policy: checkpoints, the optimizer and DDP would then take it for part of the model.
REFERENCE = {}
# Sums over the pairs trained on since the last log, for train_metrics: kept on the device, so
# no update waits for them.
TRAINED = {}
# The reward metrics, in TRL's names: logged as means over pairs, in training and evaluation
# (with eval_), in this order (reward_terms).
REWARD_NAMES = [
    "rewards/chosen",
    "rewards/rejected",
    "rewards/accuracies",
    "rewards/margins",
    "logps/chosen",
    "logps/rejected",
]


def model_class():
    """The class that loads final/ (imported here: `--help` needs no transformers)."""
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM


@dataclass
class Options:
    beta: float = option(
        0.1, "How far the model may move from the reference: higher keeps it closer.", above=0
    )
    loss_type: Literal["sigmoid", "ipo", "hinge"] = option(
        "sigmoid",
        "sigmoid: DPO. ipo: IPO (squared, on per-token log ratios; beta is its tau). hinge: SLiC.",
    )
    label_smoothing: float = option(
        0.0,
        "sigmoid only: the share of pairs taken to be mislabelled (conservative DPO).",
        at_least=0,
        below=0.5,
    )
    rpo_alpha: float = option(
        0.0,
        "Weight of the chosen completion's mean token NLL added to each pair's loss (RPO); 0: "
        "none. TRL 1.x: loss_type [sigmoid, sft] with loss_weights [1, rpo_alpha].",
        at_least=0,
    )
    max_length: int = option(1024, "Tokens of prompt and completion, each sequence.", above=0)
    max_prompt_length: int | None = option(
        None, "Cut longer prompts to their last N tokens first (None: no limit).", above=0
    )
    truncation_mode: Literal["keep_start", "keep_end"] = option(
        "keep_start",
        "keep_start: cut a long sequence's end (a pair whose prompt fills max_length is left "
        "out). keep_end: cut the prompt's start.",
    )
    precompute_ref_log_probs: bool = option(
        False,
        "Compute the reference's log probabilities once, with the data (cached), instead of a "
        "reference forward at every step: no reference in memory while training.",
    )
    ref_model_name_or_path: str | None = option(
        None, "A reference other than the starting weights (same tokenizer)."
    )
    disable_dropout: bool = option(
        True, "No dropout in the model: the policy's and the reference's numbers stay comparable."
    )
    chat_template_path: str | None = option(
        None, "A Jinja chat template file, for a tokenizer that has none (or to replace its own)."
    )


def data_columns(cfg):
    return {}


def load_tokenizer_and_config(cfg):
    tokenizer, config = pretrained.load_decoder_tokenizer_and_config(cfg, NAME)
    if cfg.ref_model_name_or_path:
        from transformers import AutoTokenizer

        path = cfg.ref_model_name_or_path
        reference = pretrained.from_hub_or_directory(AutoTokenizer, path, cfg)
        if reference.get_vocab() != tokenizer.get_vocab():
            raise UsageError(
                f"The reference {path} has another tokenizer than the model's: the log "
                "probabilities of one could not be compared with the other's."
            )
    return tokenizer, config


def eval_metric_names(cfg):
    return ["eval_loss", *(f"eval_{name}" for name in REWARD_NAMES)]


def prepare_datasets(cfg, raw, tokenizer):
    form = data_format(raw["train"], "train")
    if isinstance(raw["train"][0]["chosen"], list) and not tokenizer.chat_template:
        raise UsageError(
            "The data holds conversations (message lists) but the tokenizer has no chat "
            "template; give one with chat_template_path."
        )
    # datasets caches map() by hashing these functions and what they read: plain values, not
    # cfg, so a change of learning_rate or output_dir reuses the cached tokens. It hashes another
    # module's function by name only: its file's source (`code`) makes an edit count too.
    code = Path(tokenize.__code__.co_filename).read_text()
    tokenize_rows = functools.partial(
        tokenize,
        code=code,
        tokenizer=tokenizer,
        max_length=cfg.max_length,
        max_prompt_length=cfg.max_prompt_length,
        truncation_mode=cfg.truncation_mode,
    )
    prepared = {}
    for split, rows in raw.items():
        if data_format(rows, split) != form:
            raise UsageError(
                f"The {split} data has {data_format(rows, split)} prompts but the train data "
                f"{form} ones: give both in one format."
            )
        pairs = rows.map(
            functools.partial(tokenize_rows, split=split, form=form),
            batched=True,
            with_indices=True,
            remove_columns=rows.column_names,
            num_proc=cfg.preprocessing_num_workers,
        )
        prepared[split] = drop_cut_away(pairs, split, cfg.max_length)
    if cfg.precompute_ref_log_probs:
        prepared = {split: with_reference_logps(cfg, pairs) for split, pairs in prepared.items()}
    return prepared["train"], prepared["validation"], None


def collate(cfg, rows, tokenizer, epoch):
    """Each pair's two sequences, chosen then rejected, padded on the right: input_ids,
    attention_mask and labels of shape (pairs, 2, length). labels[t] is the token at t + 1
    where that token is the completion's, -100 elsewhere (prompt, padding)."""
    length = max(len(row[f"{name}_input_ids"]) for row in rows for name in ("chosen", "rejected"))
    shape = (len(rows), 2, length)
    batch = {
        "input_ids": torch.full(shape, tokenizer.pad_token_id, dtype=torch.long),
        "attention_mask": torch.zeros(shape, dtype=torch.long),
        "labels": torch.full(shape, -100, dtype=torch.long),
    }
    for i, row in enumerate(rows):
        for j, name in enumerate(("chosen", "rejected")):
            ids, start = row[f"{name}_input_ids"], row[f"{name}_start"]
            batch["input_ids"][i, j, : len(ids)] = torch.tensor(ids)
            batch["attention_mask"][i, j, : len(ids)] = 1
            # The first completion token is predicted at the position before it.
            first = max(start, 1)
            batch["labels"][i, j, first - 1 : len(ids) - 1] = torch.tensor(ids[first:])
    if "ref_logps" in rows[0]:
        batch["ref_logps"] = torch.tensor([row["ref_logps"] for row in rows])
    return batch


def starting_model(cfg, config, path=None):
    """The weights training starts from: pretrained, or built from `config` with the run's seed
    (in a random state of its own, so the reference and the policy, built apart, are the same).
    `path`: another starting point, the reference's; a directory that holds only a config (the
    tiny model's) gives a fresh model from it, with the run's seed."""
    if path and path != (cfg.model_name_or_path or cfg.config_name):
        from transformers import AutoConfig

        config = pretrained.from_hub_or_directory(AutoConfig, path, cfg)
        weights = [*Path(path).glob("*.safetensors"), *Path(path).glob("*.bin")]
        only_config = Path(path).is_dir() and not weights
        cfg = copy.copy(cfg)
        cfg.model_name_or_path = None if only_config else path
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = pretrained.load_model(model_class(), cfg, config)
    if cfg.disable_dropout:
        for module in model.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.0
    return model


def build_model(cfg, config, label_names):
    """The policy, and its reference: a frozen copy, the policy itself with adapters off
    (use_peft), another model (ref_model_name_or_path), or none in memory (precomputed)."""
    model = starting_model(cfg, config)
    REFERENCE.clear()
    TRAINED.clear()
    start = cfg.model_name_or_path or cfg.config_name
    # Recorded in config.yaml: predict.py, scoring final/ in place of the starting weights,
    # builds the reference the run had.
    cfg.ref_model_name_or_path = cfg.ref_model_name_or_path or start
    if cfg.precompute_ref_log_probs:
        return model
    if cfg.ref_model_name_or_path != start:
        REFERENCE["model"] = starting_model(cfg, config, cfg.ref_model_name_or_path)
    elif not cfg.use_peft:
        REFERENCE["model"] = copy.deepcopy(model)
    if "model" in REFERENCE:
        REFERENCE["model"].eval().requires_grad_(False)
    return model


def target_counts(batch):
    return torch.ones(len(batch["labels"]), dtype=torch.long)


def count_tokens(batch):
    return int(batch["attention_mask"].sum())


def completion_logps(model, batch):
    """(pairs, 2): each sequence's log probability of its completion, summed over its tokens;
    chosen and rejected go through the model in one forward."""
    pairs = len(batch["labels"])
    inputs = {name: batch[name].flatten(0, 1) for name in ("input_ids", "attention_mask")}
    labels = batch["labels"].flatten(0, 1)
    logits = model(**inputs, use_cache=False).logits
    # In fp32 even under mixed precision: a bf16 log-softmax over the vocabulary is coarse.
    negative = F.cross_entropy(
        logits.float().flatten(0, 1), labels.flatten(), ignore_index=-100, reduction="none"
    )
    return -negative.view(labels.shape).sum(1).view(pairs, 2)


@torch.no_grad()
def reference_logps(cfg, model, batch):
    """The reference's completion log probabilities: precomputed with the data, the frozen
    model's, or the policy's with its adapters off (use_peft)."""
    if "ref_logps" in batch:
        return batch["ref_logps"]
    if "model" in REFERENCE:
        return frozen_logps(cfg, REFERENCE["model"].to(batch["input_ids"].device), batch)
    if not cfg.use_peft:
        raise RuntimeError(
            "No reference model: build_model makes it, or precompute_ref_log_probs brings its "
            "log probabilities with the data."
        )
    with extract_model_from_parallel(model).disable_adapter():
        return completion_logps(model, batch)


def frozen_logps(cfg, reference, batch):
    """A frozen reference's completion log probabilities, under the run's mixed precision: the
    policy runs under Accelerate's autocast, and the reference, not prepared, needs its own."""
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.mixed_precision)
    device_type = batch["input_ids"].device.type
    with torch.autocast(device_type, dtype=dtype, enabled=dtype is not None):
        return completion_logps(reference, batch)


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
    logps = completion_logps(model, batch)
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
    scores = {
        f"eval_{name}": value for name, value in zip(REWARD_NAMES, means.tolist(), strict=True)
    }
    return {"eval_loss": eval_loss, **scores}


def with_reference_logps(cfg, pairs):
    """The pairs with a ref_logps column (chosen, rejected) computed once by the reference.
    datasets caches it with the tokens, keyed by them and by the reference (its source, weight
    files, seed), so a resumed or repeated run reads it back; the reference is loaded only when
    the cache misses."""
    from accelerate import PartialState
    from datasets.fingerprint import Hasher

    @functools.cache
    def reference():
        tokenizer, config = load_tokenizer_and_config(cfg)
        model = starting_model(cfg, config, cfg.ref_model_name_or_path)
        return model.eval().requires_grad_(False).to(PartialState().device), tokenizer

    def add_logps(rows):
        model, tokenizer = reference()
        listed = [dict(zip(rows, row, strict=True)) for row in zip(*rows.values(), strict=True)]
        batch = collate(cfg, listed, tokenizer, None)
        batch = {name: values.to(model.device) for name, values in batch.items()}
        with torch.no_grad():
            return {"ref_logps": frozen_logps(cfg, model, batch).cpu().tolist()}

    source = cfg.ref_model_name_or_path or cfg.model_name_or_path or cfg.config_name
    files = sorted(Path(source).glob("*")) if Path(source).is_dir() else []
    weights = [(file.name, file.stat().st_size, file.stat().st_mtime) for file in files]
    identity = (source, weights, cfg.seed, cfg.disable_dropout, cfg.mixed_precision)
    fingerprint = Hasher.hash((pairs._fingerprint, identity, Path(__file__).read_text()))
    return pairs.map(
        add_logps,
        batched=True,
        batch_size=cfg.per_device_eval_batch_size,
        new_fingerprint=fingerprint,
        desc="Reference log probabilities",
    )


def save_model(model, tokenizer, directory, state_dict):
    # The tokenizer carries the chat template (chat_template_path's too): final/ chats as trained.
    pretrained.save_model(model, tokenizer, directory, state_dict)


def predict(cfg, model, inputs, tokenizer, generation):
    """A pair (prompt, chosen, rejected, in any training format) gets which completion the model
    prefers and by how much: the margin of their log probabilities, each summed over the
    completion's tokens. Anything else goes to chat.py for an answer."""
    said = []
    for row in inputs:
        if not (isinstance(row, dict) and "chosen" in row and "rejected" in row):
            said.extend(chat.predict(model, [row], tokenizer, generation))
            continue
        form = "explicit" if "prompt" in row else "implicit"
        columns = {name: [value] for name, value in row.items()}
        pair = tokenize(
            columns, [len(said)], "input", form, tokenizer, cfg.max_length,
            cfg.max_prompt_length, "keep_end", code=None,
        )  # fmt: skip
        pair = {name: values[0] for name, values in pair.items()}
        batch = {k: v.to(model.device) for k, v in collate(cfg, [pair], tokenizer, None).items()}
        with torch.no_grad():
            chosen, rejected = completion_logps(model, batch)[0].tolist()
        said.append(
            {
                "preferred": "chosen" if chosen >= rejected else "rejected",
                "margin": chosen - rejected,
                "logps_chosen": chosen,
                "logps_rejected": rejected,
            }
        )
    return said
