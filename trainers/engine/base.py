"""What the training loop needs from an engine, and the optimizers engines are built with.

An ``Engine`` trains one network (a DeepSpeed engine in the Ray Train workers,
``trainers.engine.deepspeed_engine``; a plain-PyTorch stand-in in unit tests and the benchmark's
single-process baseline, ``trainers.engine.plain``). A ``Replica`` is red, blue or the standard
model: one engine per network of its family, by the network's name
(``trainers.families.base.Family.networks``), as ``docs/red-blue.md`` calls them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import torch
from torch import nn

from trainers.config import OptimConfig
from trainers.engine.masters import Masters


class Engine(Protocol):
    """What the training loop needs from one trainable network: its engine and optimizer."""

    module: nn.Module

    def forward(self, features: torch.Tensor) -> torch.Tensor: ...
    def backward(self, loss: torch.Tensor) -> None: ...
    def step(self) -> None: ...
    def lr(self) -> float: ...
    def masters(self) -> Masters: ...
    def masters_changed(self) -> None: ...
    def full_state_dict(self) -> dict[str, torch.Tensor]: ...
    def save(self, directory: Path, tag: str) -> None: ...
    def load(self, directory: Path, tag: str) -> None: ...


# One replica (red, blue or standard): an engine per network of its family, by the network's name.
Replica = dict[str, Engine]


def build_optimizer(params, cfg: OptimConfig) -> torch.optim.Optimizer:
    """A torch optimizer (no JIT-compiled DeepSpeed op, so no compile at start-up), in torch's
    fused form: one kernel for every parameter's update. On CPU the default for-loop AdamW took
    22 ms of a 72 ms step of the compute-bound MLP, the fused one 1.8 ms (docs/benchmarks.md)."""
    if cfg.name == "sgd":
        return torch.optim.SGD(
            params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, fused=True
        )
    betas = (cfg.beta1, cfg.beta2)
    adam = torch.optim.Adam if cfg.name == "adam" else torch.optim.AdamW
    return adam(params, lr=cfg.lr, betas=betas, weight_decay=cfg.weight_decay, fused=True)
