"""The optimizer and the learning-rate schedule of a recipe."""

from __future__ import annotations

import math

import torch
from torch import nn

from nas.training.recipe import Recipe
from nas.training.rmsprop import RMSpropTF


def make_optimizer(model: nn.Module, cfg: Recipe) -> torch.optim.Optimizer:
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum,
                               nesterov=cfg.momentum > 0)
    if cfg.optimizer == "rmsprop":
        # TF's RMSProp (decay 0.9, eps 1e-3 inside the square root, square average from 1, lr
        # inside the momentum), not torch.optim.RMSprop: see nas.training.rmsprop.
        return RMSpropTF(groups, lr=cfg.lr, alpha=0.9, eps=1e-3, momentum=cfg.momentum)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr)
    return torch.optim.AdamW(groups, lr=cfg.lr)


def lr_at(cfg: Recipe, step: int, steps_per_epoch: int) -> float:
    """Learning rate for optimiser step ``step`` (0-based)."""
    total = cfg.epochs * steps_per_epoch
    warm = int(round(cfg.warmup_epochs * steps_per_epoch))
    if step < warm:
        return cfg.lr * (step + 1) / warm
    if cfg.schedule == "constant":
        return cfg.lr
    if cfg.schedule == "cosine":
        frac = (step - warm) / max(1, total - warm)
        return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * frac))
    epoch = step / steps_per_epoch
    if cfg.schedule == "step":
        return cfg.lr * cfg.decay_rate ** math.floor(epoch / cfg.decay_epochs)
    return cfg.lr * cfg.decay_rate ** (epoch / cfg.decay_epochs)
