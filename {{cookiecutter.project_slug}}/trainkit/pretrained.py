"""Loading a transformers tokenizer, model config and model from a hub id or a local directory,
the same code path for both, with one-sentence errors. Used by task.py.

transformers is imported where it is used, as in every module train.py imports: `--help` and a
bad option answer without it (about half a second of start-up)."""

import math
from pathlib import Path

import torch

from trainkit.options import UsageError


def from_hub_or_directory(auto_class, name, cfg):
    """auto_class.from_pretrained(name): a hub id or a local directory, one code path for both,
    and one sentence when neither works."""
    if not Path(name).is_dir() and name.startswith(("/", ".", "~")):
        raise UsageError(f"Model or tokenizer {name} is not a local directory.")
    try:
        return auto_class.from_pretrained(name, trust_remote_code=cfg.trust_remote_code)
    except (OSError, ValueError) as error:
        # --debug true shows the library's full explanation.
        reason = "not a model directory, nor reachable on the hub"
        raise UsageError(f"Could not load {name}: {reason}.") from error


def load_tokenizer_and_config(cfg, length_option):
    """The tokenizer and the model's config, cheap to load, so bad names and sizes fail before any
    data work. `length_option` names the option that must fit the model's positions."""
    from transformers import AutoConfig, AutoTokenizer

    model_id = cfg.model_name_or_path or cfg.config_name
    config = from_hub_or_directory(AutoConfig, model_id, cfg)
    tokenizer = from_hub_or_directory(AutoTokenizer, cfg.tokenizer_name or model_id, cfg)
    # GPT-style tokenizers have no padding token; padded positions are masked anyway.
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    config.pad_token_id = tokenizer.pad_token_id
    length = getattr(cfg, length_option)
    positions = getattr(config, "max_position_embeddings", math.inf)
    if length > positions:
        raise UsageError(f"{length_option}={length} exceeds the model's {positions} positions.")
    return tokenizer, config


def load_decoder_tokenizer_and_config(cfg, task_name):
    """load_tokenizer_and_config for a decoder-only model (sft, dpo): an encoder-decoder is
    refused, and chat_template_path replaces the tokenizer's chat template."""
    tokenizer, config = load_tokenizer_and_config(cfg, length_option="max_length")
    if config.is_encoder_decoder:
        name = cfg.model_name_or_path or cfg.config_name
        raise UsageError(
            f"{name} is an encoder-decoder model ({config.model_type}); {task_name} needs a "
            "decoder-only model such as GPT-2, Llama or Qwen (a seq2seq project trains this one)."
        )
    if cfg.chat_template_path:
        path = Path(cfg.chat_template_path)
        if not path.is_file():
            raise UsageError(f"chat_template_path {path} is not a file.")
        tokenizer.chat_template = path.read_text(encoding="utf-8")
    return tokenizer, config


def load_model(model_class, cfg, config, **pretrained_options):
    """Pretrained weights from model_name_or_path, or a fresh model built from `config`."""
    remote = cfg.trust_remote_code
    try:
        if cfg.model_name_or_path:
            path, options = cfg.model_name_or_path, {"config": config, **pretrained_options}
            if cfg.load_in_4bit:
                options.update(four_bit_loading())
            model = model_class.from_pretrained(path, trust_remote_code=remote, **options)
        else:
            model = model_class.from_config(config, trust_remote_code=remote)
        # fp32 weights whatever the checkpoint stores (transformers 5 loads a bf16 checkpoint as
        # bf16): AdamW and the fp16 grad scaler expect them; mixed_precision sets the compute.
        # 4-bit weights stay as they are: they do not train (lora.py).
        return model if cfg.load_in_4bit else model.float()
    except (OSError, ValueError) as error:
        reason = str(error).splitlines()[0]
        raise UsageError(
            f"Could not load the weights of {cfg.model_name_or_path}: {reason}"
        ) from error


def save_model(model, tokenizer, directory, state_dict):
    """A directory that from_pretrained loads: weights, config and tokenizer."""
    model.save_pretrained(directory, state_dict=state_dict)
    tokenizer.save_pretrained(directory)


def four_bit_loading():
    """QLoRA's from_pretrained options: NF4 weights with double quantization, bf16 compute, on
    this process's GPU (config.py has checked that there is one)."""
    from accelerate import PartialState
    from transformers import BitsAndBytesConfig

    try:
        import bitsandbytes  # noqa: F401
    except ImportError as error:
        raise UsageError("load_in_4bit needs bitsandbytes: pip install bitsandbytes.") from error

    quantization = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16,
    )
    return {"quantization_config": quantization, "device_map": {"": PartialState().device}}
