"""The optimizer: parameter groups and the choice of algorithm.

The learning rate is not the optimizer's business here: train.py sets it before every update
from lr_at(), a pure function of the update number, times each group's `lr_scale`
(layer-wise decay and the head's own rate), which is saved with the optimizer's state.
"""

import functools
import re

import accelerate.optimizer
import torch

from trainkit.options import UsageError

# Accelerate's optimizer.step() asks importlib twice per update whether the lomo_optim package is
# installed: about 0.3 ms, a quarter of a small MLP's whole update on CPU (bench/README.md). The
# answer cannot change during a run, so it is asked once. (The guard: accelerate may rename it.)
if hasattr(accelerate.optimizer, "is_lomo_available"):
    accelerate.optimizer.is_lomo_available = functools.cache(accelerate.optimizer.is_lomo_available)

# Devices with PyTorch's fused AdamW kernel: one kernel updates every parameter, several times
# faster than the per-tensor loop (4.6x for a MiniLM-size model on one CPU thread). The
# Trainer uses it by default too (optim="adamw_torch_fused"). Elsewhere (XLA, for example) the
# fallback is the implementation PyTorch picks by default.
FUSED_ADAMW_DEVICES = ("cpu", "cuda", "mps", "xpu", "hpu")


# A numbered transformer layer in a parameter's name: the stack it belongs to, and its index
# ("bert.encoder.layer.3.", "transformer.h.11.", "model.layers.0.", "encoder.block.2.").
LAYER = re.compile(r"^(.*?)\.(?:layers?|h|blocks?)\.(\d+)\.")
EMBEDDINGS = re.compile(r"embed|\bwte\b|\bwpe\b|^shared\b")


def head_parameters(model):
    """Names of the parameters outside the pretrained base model: a task's head, such as a
    fresh classification layer. None where the model is its own base (T5, model.py's MLP), and
    never a language model's output layer: that is pretrained, whether or not it shares the
    embeddings' weights."""
    base = getattr(model, "base_model", model)
    output = getattr(model, "get_output_embeddings", lambda: None)()
    kept = [*base.parameters(), *(output.parameters() if output is not None else ())]
    in_base = {id(p) for p in kept}
    return [name for name, p in model.named_parameters() if id(p) not in in_base]


def lr_scales(cfg, model):
    """{parameter name: its rate as a multiple of learning_rate}. With layerwise_lr_decay d, the
    top layer of each stack keeps the rate, the one below gets d times it, the next d^2, down
    to the embeddings, lowest of all; head_learning_rate sets the rate of what lies outside the
    pretrained base model (a fresh classification head)."""
    names = [name for name, p in model.named_parameters() if p.requires_grad]
    head = set(head_parameters(model))
    layers = {name: LAYER.match(name) for name in names}
    depth_of_stack = {}
    for match in filter(None, layers.values()):
        stack = match.group(1)
        depth_of_stack[stack] = max(depth_of_stack.get(stack, 0), int(match.group(2)) + 1)
    if cfg.layerwise_lr_decay != 1 and not depth_of_stack:
        raise UsageError("layerwise_lr_decay: this model has no numbered layers to decay over.")
    if cfg.head_learning_rate is not None and cfg.use_peft:
        raise UsageError("head_learning_rate does not apply with use_peft yet: set one rate.")
    if cfg.head_learning_rate is not None and not head:
        raise UsageError("head_learning_rate: this model has no head outside its base model.")
    scales = {}
    for name in names:
        if name in head and cfg.head_learning_rate is not None:
            scales[name] = cfg.head_learning_rate / cfg.learning_rate
            continue
        match = layers[name]
        if match:
            depth = depth_of_stack[match.group(1)] - 1 - int(match.group(2))
        elif EMBEDDINGS.search(name) and name not in head:
            depth = max(depth_of_stack.values(), default=0)
        else:  # final norms, poolers, heads: at the top
            depth = 0
        scales[name] = cfg.layerwise_lr_decay**depth
    return scales


def build_optimizer(cfg, model, device):
    """No weight decay on biases and norm weights: the 1-D parameters. `device` is where the
    parameters will live: train.py builds the optimizer before accelerate moves the model."""
    scales = lr_scales(cfg, model)
    by_group = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            decay = cfg.weight_decay if p.ndim >= 2 else 0.0
            by_group.setdefault((scales[name], decay), []).append(p)
    # Highest rate first, decayed before not: group 0 is the top layers' weights.
    order = sorted(by_group, key=lambda key: (-key[0], -key[1]))
    groups = [
        {"params": by_group[key], "weight_decay": key[1], "lr_scale": key[0]} for key in order
    ]
    params = [p for group in groups for p in group["params"]]
    if cfg.optim == "adafactor":
        # Imported here: transformers.optimization pulls in peft and scipy, seconds at every start.
        from transformers.optimization import Adafactor

        return Adafactor(groups, lr=cfg.learning_rate, scale_parameter=False, relative_step=False)
    if cfg.optim == "sgd":
        return torch.optim.SGD(groups, lr=cfg.learning_rate)
    betas = (cfg.adam_beta1, cfg.adam_beta2)
    fused = device.type in FUSED_ADAMW_DEVICES and all(p.is_floating_point() for p in params)
    return torch.optim.AdamW(
        groups, lr=cfg.learning_rate, betas=betas, eps=cfg.adam_epsilon, fused=fused or None
    )


def set_learning_rate(optimizer, learning_rate):
    """Every group at its multiple (`lr_scale`, from build_optimizer) of `learning_rate`, the
    schedule's rate for this update (train.py's lr_at)."""
    for group in optimizer.param_groups:
        group["lr"] = learning_rate * group["lr_scale"]
