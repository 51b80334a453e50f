"""LoRA adapters (use_peft=true, option names as TRL's ModelConfig and PEFT's LoraConfig): the
pretrained weights stay frozen, bit for bit, and small low-rank matrices beside the targeted
linear layers train instead, with a fresh head (anything outside the pretrained base model,
such as a classification head) trained in full.

Checkpoints hold the trainable weights only (the adapters and the head) and the optimizer state
of those; the frozen weights come back from model_name_or_path on resume. Under FSDP2 the
engine saves the model itself, every weight in its shards (the frozen ones too: in
tests/test_sharding.py's causal-lm run, 856 kB of shards where DDP's checkpoint holds 8.7 kB of
adapters), and resume loads them all back. final/ holds the
adapter (adapter_model.safetensors, adapter_config.json, for PeftModel.from_pretrained); with
merge_adapter=true, final/merged/ also holds the model with the adapters merged into its
weights, which plain from_pretrained loads.
"""

from pathlib import Path

import torch
from safetensors.torch import load_file

from trainkit.optim import head_parameters
from trainkit.options import UsageError


def wrap(cfg, model, accelerator):
    """The model with LoRA adapters, and checkpoints that hold only what trains."""
    if not cfg.use_peft:
        return model
    if not cfg.model_name_or_path:
        raise UsageError("use_peft needs pretrained weights (model_name_or_path) to adapt.")
    if accelerator.distributed_type == "DEEPSPEED":  # it ran here, but no test proves it yet
        raise UsageError("use_peft runs on one device, with DDP or with FSDP, not DeepSpeed.")
    sharded = accelerator.distributed_type == "FSDP"
    if sharded and cfg.merge_adapter:  # merging would read weights other processes hold
        raise UsageError(
            "merge_adapter does not run under FSDP, where each process holds a shard of the "
            "weights; merge final/ afterwards on one process "
            "(PeftModel.from_pretrained(base, 'final').merge_and_unload())."
        )
    try:
        from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    except ImportError as error:
        raise UsageError("use_peft needs the peft package: pip install peft.") from error
    if cfg.load_in_4bit and not getattr(model, "is_loaded_in_4bit", False):
        raise UsageError("load_in_4bit loads transformers models in 4 bits; this one is not.")

    head = sorted({name.split(".")[0] for name in head_parameters(model)})
    targets, to_save = cfg.lora_target_modules, cfg.lora_modules_to_save
    check_module_names(model, "lora_target_modules", targets)
    check_module_names(model, "lora_modules_to_save", to_save)
    config = LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=targets if targets in (None, "all-linear") else targets.split(","),
        modules_to_save=to_save.split(",") if to_save else head or None,
    )
    if cfg.load_in_4bit:  # QLoRA: the weights that are not 4-bit (norms) in fp32
        checkpointing = {"use_reentrant": False}  # as train.py enables it
        model = prepare_model_for_kbit_training(model, cfg.gradient_checkpointing, checkpointing)
    try:
        model = get_peft_model(model, config)
    except ValueError as error:  # target modules that match nothing, or none known for the model
        raise UsageError(f"use_peft: {str(error).splitlines()[0]}") from error
    if not sharded:  # FSDP2 saves and loads the model itself, in shards
        accelerator.register_save_state_pre_hook(keep_trainable_weights)
        accelerator.register_load_state_pre_hook(load_trainable_weights)
    return model


def check_module_names(model, option, wanted):
    """Each comma-separated name must end a module's name: PEFT's errors for a typo are long
    and change between its versions."""
    if not wanted or wanted == "all-linear":
        return
    modules = dict(model.named_modules())
    for module in wanted.split(","):
        if not any(name == module or name.endswith("." + module) for name in modules):
            linear = [n for n, m in modules.items() if isinstance(m, torch.nn.Linear)]
            linear = {name.split(".")[-1] for name in linear}
            raise UsageError(
                f"{option}: no module of the model is called {module!r}; its linear layers are "
                f"{', '.join(sorted(linear))}."
            )


def trainable_names(model):
    """{name in a checkpoint: name in the model} of the trainable weights. Checkpoint names drop
    DDP's "module." prefix, so a run resumes on another number of processes."""
    names = [name for name, p in model.named_parameters() if p.requires_grad]
    return {name.removeprefix("module."): name for name in names}


def keep_trainable_weights(models, weights, output_dir):
    """accelerate's save_state hook: each model's weights cut down to the trainable ones."""
    for model, state_dict in zip(models, weights, strict=True):
        kept = {saved: state_dict[name] for saved, name in trainable_names(model).items()}
        state_dict.clear()
        state_dict.update(kept)


def load_trainable_weights(models, input_dir):
    """accelerate's load_state hook: loads the trainable weights itself and checks that the
    checkpoint holds exactly those, then leaves the models out of accelerate's own (strict)
    loading, which would ask for the frozen weights too."""
    for i, model in enumerate(models):
        path = Path(input_dir, "model.safetensors" if i == 0 else f"model_{i}.safetensors")
        device = next(model.parameters()).device
        state_dict = load_file(path, device=str(device))
        names = trainable_names(model)
        if set(state_dict) != set(names):
            odd = sorted(set(state_dict) ^ set(names))[0]
            raise UsageError(f"{path} does not hold this run's LoRA weights (e.g. {odd}).")
        with torch.no_grad():
            model.load_state_dict({names[k]: v for k, v in state_dict.items()}, strict=False)
    models.clear()


def save_merged(model, tokenizer, directory, save_model):
    """The adapters merged into the weights (in place: the run's last act), saved as a model
    that plain from_pretrained loads."""
    merged = model.merge_and_unload(safe_merge=True)
    save_model(merged, tokenizer, directory, merged.state_dict())
