"""What the training loop needs from an engine, and the optimizers engines are built with.

An ``Engine`` trains one network (a DeepSpeed engine in the Ray Train workers,
``trainers.engine.deepspeed_engine``; a plain-PyTorch stand-in in unit tests and the benchmark's
single-process baseline, ``trainers.engine.plain``). A ``Replica`` is red, blue or the standard
model: one engine per network of its family, by the network's name
(``trainers.families.base.Family.networks``), as ``docs/red-blue.md`` calls them.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, Protocol

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


def _undecorated(method):
    """A bound method's function without torch's decorators (each keeps the function it wraps as
    ``__wrapped__``); called with the instance first."""
    return inspect.unwrap(method.__func__)


class EagerOnly:
    """A torch optimizer whose methods run without ``torch._dynamo``.

    torch wraps ``step`` to import ``torch._dynamo`` and mark graph breaks for ``torch.compile``,
    and ``add_param_group`` (called by the constructor), ``zero_grad``, ``state_dict`` and
    ``load_state_dict`` to import it and disable compiling inside them. Redblue never compiles an
    optimizer, and that import is about 0.9 s of every worker's start (docs/benchmarks.md#start-up),
    so these run the same methods undecorated: ``step`` with gradients off, as torch's wrapper
    does for an optimizer that is not ``differentiable``.
    """

    @torch.no_grad()
    def step(self, closure=None):
        return _undecorated(super().step)(self, closure)  # type: ignore[misc]

    def add_param_group(self, param_group):
        return _undecorated(super().add_param_group)(self, param_group)  # type: ignore[misc]

    def zero_grad(self, set_to_none: bool = True) -> None:
        _undecorated(super().zero_grad)(self, set_to_none)  # type: ignore[misc]

    def state_dict(self):
        return _undecorated(super().state_dict)(self)  # type: ignore[misc]

    def load_state_dict(self, state_dict) -> None:
        _undecorated(super().load_state_dict)(self, state_dict)  # type: ignore[misc]


class EagerAdam(EagerOnly, torch.optim.Adam):
    pass


class EagerAdamW(EagerOnly, torch.optim.AdamW):
    pass


class EagerSGD(EagerOnly, torch.optim.SGD):
    pass


# optim.name -> (torch's class, its eager form)
OPTIMIZERS: dict[str, tuple[type[Any], type[Any]]] = {
    "sgd": (torch.optim.SGD, EagerSGD),
    "adam": (torch.optim.Adam, EagerAdam),
    "adamw": (torch.optim.AdamW, EagerAdamW),
}


def build_optimizer(params, cfg: OptimConfig, *, eager: bool = True) -> torch.optim.Optimizer:
    """A torch optimizer (no JIT-compiled DeepSpeed op, so no compile at start-up), in torch's
    fused form: one kernel for every parameter's update. On CPU the default for-loop AdamW took
    22 ms of a 72 ms step of the compute-bound MLP, the fused one 1.8 ms (docs/benchmarks.md).

    ``eager``: the same optimizer without ``torch._dynamo`` (``EagerOnly``). DeepSpeed's ZeRO
    stages check the optimizer's class against torch's own (and import ``torch._dynamo``
    there anyway), so their engines take torch's classes."""
    torch_class, eager_class = OPTIMIZERS[cfg.name]
    optimizer = eager_class if eager else torch_class
    if cfg.name == "sgd":
        return optimizer(
            params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, fused=True
        )
    betas = (cfg.beta1, cfg.beta2)
    return optimizer(params, lr=cfg.lr, betas=betas, weight_decay=cfg.weight_decay, fused=True)
