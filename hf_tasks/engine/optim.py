"""Optimizer and learning-rate schedule from ``OptimConfig``.

Schedules are pure functions of the optimizer step, so a resumed run recomputes exactly the same lr.
"""

from __future__ import annotations

import math
from functools import partial

import torch

from hf_tasks.config import OptimConfig


def build_optimizer(model: torch.nn.Module, cfg: OptimConfig) -> torch.optim.Optimizer:
    """AdamW or SGD over trainable parameters; no weight decay on biases and norm weights (1-d tensors)."""
    decay, no_decay = [], []
    for param in model.parameters():
        if param.requires_grad:
            (no_decay if param.ndim <= 1 else decay).append(param)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    groups = [g for g in groups if g["params"]]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov)
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas))


def lr_factor(step: int, *, kind: str, total_steps: int, warmup_steps: int, steps_per_epoch: int,
              step_epochs: tuple[int, ...], gamma: float) -> float:
    """Multiplier of the base lr at optimizer step ``step`` (0-based): linear warmup, then the schedule."""
    if step < warmup_steps:
        return (step + 1) / (warmup_steps + 1)
    if kind == "step":
        return gamma ** sum(step >= epoch * steps_per_epoch for epoch in step_epochs)
    if kind == "constant":
        return 1.0
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    progress = min(max(progress, 0.0), 1.0)
    if kind == "linear":
        return 1.0 - progress
    return 0.5 * (1.0 + math.cos(math.pi * progress))  # cosine


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: OptimConfig, total_steps: int,
                    steps_per_epoch: int) -> torch.optim.lr_scheduler.LambdaLR:
    """A LambdaLR stepped once per optimizer step (not per micro-batch, not per process)."""
    warmup = cfg.warmup_steps or int(cfg.warmup_ratio * total_steps)
    factor = partial(lr_factor, kind=cfg.scheduler, total_steps=total_steps, warmup_steps=warmup,
                     steps_per_epoch=steps_per_epoch, step_epochs=tuple(cfg.step_epochs), gamma=cfg.gamma)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
