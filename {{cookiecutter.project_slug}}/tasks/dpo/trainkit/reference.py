"""The dpo task's reference model and log probabilities: the starting weights built apart from
the policy but equal to them, a completion's log probability, and the reference's computed once
and cached with the data (precompute_ref_log_probs). Which reference a run uses is task.py's
decision (build_model, reference_logps)."""

import copy
import functools
from pathlib import Path

import torch
import torch.nn.functional as F

from trainkit import pairs, pretrained
from trainkit.options import UsageError


def check_same_tokenizer(cfg, tokenizer):
    """A reference given by ref_model_name_or_path reads the policy's tokens, or its log
    probabilities mean nothing beside the policy's."""
    if cfg.ref_model_name_or_path:
        from transformers import AutoTokenizer

        path = cfg.ref_model_name_or_path
        reference = pretrained.from_hub_or_directory(AutoTokenizer, path, cfg)
        if reference.get_vocab() != tokenizer.get_vocab():
            raise UsageError(
                f"The reference {path} has another tokenizer than the model's: the log "
                "probabilities of one could not be compared with the other's."
            )


def starting_model(cfg, config, path=None):
    """The weights training starts from: pretrained, or built from `config` with the run's seed
    (in a random state of its own, so the reference and the policy, built apart, are the same).
    `path`: another starting point, the reference's; a directory that holds only a config (the
    tiny model's) gives a fresh model from it, with the run's seed."""
    from transformers import AutoConfig, AutoModelForCausalLM

    if path and path != (cfg.model_name_or_path or cfg.config_name):
        config = pretrained.from_hub_or_directory(AutoConfig, path, cfg)
        weights = [*Path(path).glob("*.safetensors"), *Path(path).glob("*.bin")]
        only_config = Path(path).is_dir() and not weights
        cfg = copy.copy(cfg)
        cfg.model_name_or_path = None if only_config else path
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = pretrained.load_model(AutoModelForCausalLM, cfg, config)
    if cfg.disable_dropout:
        for module in model.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.0
    return model


def completion_logps(model, batch):
    """(pairs, 2): each sequence's log probability of its completion, summed over its tokens;
    chosen and rejected go through the model in one forward."""
    inputs = {name: batch[name].flatten(0, 1) for name in ("input_ids", "attention_mask")}
    labels = batch["labels"].flatten(0, 1)
    logits = model(**inputs, use_cache=False).logits
    # In fp32 even under mixed precision: a bf16 log-softmax over the vocabulary is coarse.
    negative = F.cross_entropy(
        logits.float().flatten(0, 1), labels.flatten(), ignore_index=-100, reduction="none"
    )
    return -negative.view(labels.shape).sum(1).view(len(batch["labels"]), 2)


def frozen_logps(cfg, reference, batch):
    """A frozen reference's completion log probabilities, under the run's mixed precision: the
    policy runs under Accelerate's autocast, and the reference, not prepared, needs its own."""
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.mixed_precision)
    device_type = batch["input_ids"].device.type
    with torch.no_grad(), torch.autocast(device_type, dtype=dtype, enabled=dtype is not None):
        return completion_logps(reference.to(batch["input_ids"].device), batch)


def with_reference_logps(cfg, splits, load_tokenizer_and_config):
    """{split: its pairs with a ref_logps column (chosen, rejected)}, computed once by the
    reference. datasets caches the column with the tokens, keyed by them and by the reference
    (its source, its files, the seed), so a resumed or repeated run reads it back; the
    reference is loaded only when the cache misses, once for every split, and let go after.
    Batches of per_device_train_batch_size pairs, as TRL's default: a batch's logits, (pairs x 2
    x length x vocabulary) floats, are the peak of memory here."""
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
        batch = pairs.collate(listed, tokenizer.pad_token_id)
        batch = {name: values.to(model.device) for name, values in batch.items()}
        return {"ref_logps": frozen_logps(cfg, model, batch).cpu().tolist()}

    source = cfg.ref_model_name_or_path or cfg.model_name_or_path or cfg.config_name
    files = sorted(Path(source).glob("*")) if Path(source).is_dir() else []
    weights = [(file.name, file.stat().st_size, file.stat().st_mtime) for file in files]
    identity = (source, weights, cfg.seed, cfg.disable_dropout, cfg.mixed_precision)
    code = Path(__file__).read_text()
    with_logps = {
        name: split.map(
            add_logps,
            batched=True,
            batch_size=cfg.per_device_train_batch_size,
            new_fingerprint=Hasher.hash((split._fingerprint, identity, code)),
            desc="Reference log probabilities",
        )
        for name, split in splits.items()
    }
    reference.cache_clear()  # the reference's memory back before the policy is built
    return with_logps
