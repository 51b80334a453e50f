"""The optimizer: parameter groups and the choice of algorithm.

The learning rate is not the optimizer's business here: train.py sets it before every update
from lr_at(), a pure function of the update number.
"""

import functools

import accelerate.optimizer
import torch
from transformers.optimization import Adafactor

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


def build_optimizer(cfg, model, device):
    """No weight decay on biases and norm weights: the 1-D parameters. `device` is where the
    parameters will live: train.py builds the optimizer before accelerate moves the model."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": cfg.weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
    if cfg.optim == "adafactor":
        return Adafactor(groups, lr=cfg.learning_rate, scale_parameter=False, relative_step=False)
    if cfg.optim == "sgd":
        return torch.optim.SGD(groups, lr=cfg.learning_rate)
    betas = (cfg.adam_beta1, cfg.adam_beta2)
    fused = device.type in FUSED_ADAMW_DEVICES and all(p.is_floating_point() for p in params)
    return torch.optim.AdamW(
        groups, lr=cfg.learning_rate, betas=betas, eps=cfg.adam_epsilon, fused=fused or None
    )
