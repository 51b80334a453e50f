"""Loading a transformers tokenizer, model config and model from a hub id or a local directory,
the same code path for both, with one-sentence errors. Used by task.py."""

import math
from pathlib import Path

from transformers import AutoConfig, AutoTokenizer

from config import UsageError


def load_tokenizer_and_config(cfg, length_option):
    """The tokenizer and the model's config, cheap to load, so bad names and sizes fail before any
    data work. `length_option` names the option that must fit the model's positions."""
    model_id = cfg.model_name_or_path or cfg.config_name
    tokenizer_id = cfg.tokenizer_name or model_id
    for name in (tokenizer_id, model_id):
        if not Path(name).is_dir() and name.startswith(("/", ".", "~")):
            raise UsageError(f"Model or tokenizer {name} is not a local directory.")
    remote = cfg.trust_remote_code
    try:
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_id, trust_remote_code=remote)
        config = AutoConfig.from_pretrained(model_id, trust_remote_code=remote)
    except (OSError, ValueError) as error:
        # --debug true shows the library's full explanation.
        reason = "not a model directory, nor reachable on the hub"
        raise UsageError(f"Could not load {model_id}: {reason}.") from error
    # GPT-style tokenizers have no padding token; padded positions are masked anyway.
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    config.pad_token_id = tokenizer.pad_token_id
    length = getattr(cfg, length_option)
    positions = getattr(config, "max_position_embeddings", math.inf)
    if length > positions:
        raise UsageError(f"{length_option}={length} exceeds the model's {positions} positions.")
    return tokenizer, config


def load_model(model_class, cfg, config):
    """Pretrained weights from model_name_or_path, or a fresh model built from `config`."""
    remote = cfg.trust_remote_code
    try:
        if cfg.model_name_or_path:
            path = cfg.model_name_or_path
            model = model_class.from_pretrained(path, config=config, trust_remote_code=remote)
        else:
            model = model_class.from_config(config, trust_remote_code=remote)
        # fp32 weights whatever the checkpoint stores (transformers 5 loads a bf16 checkpoint as
        # bf16): AdamW and the fp16 grad scaler expect them; mixed_precision sets the compute.
        return model.float()
    except (OSError, ValueError) as error:
        reason = str(error).splitlines()[0]
        raise UsageError(
            f"Could not load the weights of {cfg.model_name_or_path}: {reason}"
        ) from error


def save_model(model, tokenizer, directory, state_dict):
    """A directory that from_pretrained loads: weights, config and tokenizer."""
    model.save_pretrained(directory, state_dict=state_dict)
    tokenizer.save_pretrained(directory)
