"""Learning-rate schedules after the torchvision stereo reference recipe.

``lr(step)`` rises linearly over ``warmup_steps``, stays at the peak until
``decay_after_steps``, then decays towards ``min_lr`` by the chosen method, reaching it
just after the last step (so no step is wasted at ``min_lr = 0``). The exponential path
cannot reach 0: with ``min_lr = 0`` it ends at ``lr · 1e-4``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

DECAY_METHODS = ("cosine", "linear", "exponential", "constant")


@dataclass(frozen=True)
class Schedule:
    lr: float
    total_steps: int
    min_lr: float = 0.0
    warmup_steps: int = 0
    decay_after_steps: int = 0
    method: str = "cosine"

    def __post_init__(self):
        if self.method not in DECAY_METHODS:
            raise ValueError(f"unknown lr decay method {self.method!r}; use one of {', '.join(DECAY_METHODS)}")

    def __call__(self, step: int) -> float:
        """The learning rate of (0-based) optimisation step ``step``."""
        if self.warmup_steps and step < self.warmup_steps:
            return self.lr * (step + 1) / self.warmup_steps
        start = max(self.decay_after_steps, self.warmup_steps)
        span = self.total_steps - start
        if self.method == "constant" or step <= start or span <= 0:
            return self.lr
        t = min(1.0, (step - start) / span)
        if self.method == "linear":
            return self.lr + (self.min_lr - self.lr) * t
        if self.method == "cosine":
            return self.min_lr + 0.5 * (self.lr - self.min_lr) * (1 + math.cos(math.pi * t))
        floor = max(self.min_lr, self.lr * 1e-4)  # exponential: geometric path to min_lr
        return self.lr * (floor / self.lr) ** t


def make_scheduler(optimizer: torch.optim.Optimizer, schedule: Schedule) -> torch.optim.lr_scheduler.LambdaLR:
    """A LambdaLR whose factor follows ``schedule`` (its state dict holds plain values only)."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: schedule(step) / schedule.lr)
