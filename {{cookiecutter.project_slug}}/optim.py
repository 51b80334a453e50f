"""The optimizer: parameter groups and the choice of algorithm.

The learning rate is not the optimizer's business here: train.py sets it before every update
from lr_at(), a pure function of the update number.
"""

import torch
from transformers.optimization import Adafactor


def build_optimizer(cfg, model):
    """No weight decay on biases and norm weights: the 1-D parameters."""
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
    fused = params[0].device.type == "cuda"
    return torch.optim.AdamW(
        groups, lr=cfg.learning_rate, betas=betas, eps=cfg.adam_epsilon, fused=fused
    )
