"""Training engines: a DeepSpeed engine built from our config, and a plain-PyTorch stand-in.

Both expose the same small surface (the ``Replica`` protocol) so the loop in ``trainers.loop`` runs
unchanged on either: the DeepSpeed one in Ray Train workers, the plain one in unit tests and in
the single-process baseline of the benchmark.
"""

from __future__ import annotations

import contextlib
import io
import logging
import sys
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from trainers.config import DeepSpeedConfig, OptimConfig
from trainers.masters import Masters, copy_masters_down, masters_of
from trainers.rounds import RunClock
from trainers.schedules import apply_peak_values, build_scheduler


class Replica(Protocol):
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


# One replica of a model (red, blue or standard): an engine per network of its family, by the
# network's name (``trainers.families.base.Family.networks``).
Member = dict[str, Replica]


def build_optimizer(params, cfg: OptimConfig) -> torch.optim.Optimizer:
    """A torch optimizer (no JIT-compiled DeepSpeed op, so no compile at start-up)."""
    if cfg.name == "sgd":
        return torch.optim.SGD(
            params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
        )
    if cfg.name == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def import_deepspeed() -> Any:
    """``import deepspeed`` without its optional MLflow import (about 1.6 s of worker start-up).

    DeepSpeed's autotuner, which we never use, tries ``import mlflow`` and copes when that fails;
    a ``None`` entry in ``sys.modules`` makes it fail fast. The entry is removed afterwards, so a
    later ``import mlflow`` in the same process works normally.
    """
    if "deepspeed" in sys.modules or "mlflow" in sys.modules:
        import deepspeed

        return deepspeed
    sys.modules["mlflow"] = None  # type: ignore[assignment]
    try:
        import deepspeed
    finally:
        del sys.modules["mlflow"]
    return deepspeed


def deepspeed_config(ds: DeepSpeedConfig, optim: OptimConfig, world_size: int) -> dict[str, Any]:
    """The DeepSpeed JSON config, built from our config in this one place."""
    micro_batch = optim.batch_size // (world_size * ds.grad_accum_steps)
    if micro_batch < 1 or micro_batch * world_size * ds.grad_accum_steps != optim.batch_size:
        raise ValueError(
            f"optim.batch_size {optim.batch_size} must be a multiple of num_workers "
            f"({world_size}) x deepspeed.grad_accum_steps ({ds.grad_accum_steps})"
        )
    zero: dict[str, Any] = {"stage": ds.zero_stage}
    if ds.offload == "cpu":
        zero["offload_optimizer"] = {"device": "cpu"}
    return {
        "train_batch_size": optim.batch_size,
        "train_micro_batch_size_per_gpu": micro_batch,
        "gradient_accumulation_steps": ds.grad_accum_steps,
        "gradient_clipping": optim.grad_clip,
        "zero_optimization": zero,
        "bf16": {"enabled": ds.precision == "bf16"},
        "fp16": {"enabled": ds.precision == "fp16"},
        # We hand DeepSpeed torch optimizers: no CPU-Adam op to JIT-compile at start-up.
        "zero_allow_untested_optimizer": True,
        "zero_force_ds_cpu_optimizer": False,
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }


class DeepSpeedReplica:
    """A model wrapped in a DeepSpeed engine with its own torch optimizer and lr schedule."""

    def __init__(
        self,
        model: nn.Module,
        *,
        ds: DeepSpeedConfig,
        optim: OptimConfig,
        world_size: int,
        clock: RunClock,
    ) -> None:
        deepspeed = import_deepspeed()
        logging.getLogger("DeepSpeed").setLevel(logging.WARNING)
        optimizer = build_optimizer(model.parameters(), optim)
        # DeepSpeed prints "... shm_comm_op built successfully" at every load of its prebuilt op.
        with contextlib.redirect_stdout(io.StringIO()):
            self.engine, _, _, _ = deepspeed.initialize(
                model=model,
                optimizer=optimizer,
                lr_scheduler=build_scheduler(optimizer, optim, clock),
                config=deepspeed_config(ds, optim, world_size),
            )
        self.module = self.engine.module
        self.optim = optim
        self.device = self.engine.device

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """fp32 features in; the model normalizes them, then casts to its own precision."""
        return self.engine(features.to(device=self.device))

    def backward(self, loss: torch.Tensor) -> None:
        self.engine.backward(loss)

    def step(self) -> None:
        self.engine.step()

    def lr(self) -> float:
        return float(self.engine.get_lr()[0])

    def masters(self) -> Masters:
        """The fp32 weights this worker's optimizer steps on (see ``trainers.masters``)."""
        return masters_of(self.engine.optimizer, list(self.module.parameters()))

    def masters_changed(self) -> None:
        """Copy the master weights down into the model (a collective call when partitioned)."""
        copy_masters_down(self.engine.optimizer)

    def full_state_dict(self) -> dict[str, torch.Tensor]:
        """Every tensor of the model, gathered (a collective call under ZeRO-3)."""
        deepspeed = import_deepspeed()
        params = list(self.module.parameters())
        with deepspeed.zero.GatheredParameters(params, modifier_rank=None):
            return {
                k: v.detach().float().cpu().clone() for k, v in self.module.state_dict().items()
            }

    def save(self, directory: Path, tag: str) -> None:
        self.engine.save_checkpoint(str(directory), tag=tag, save_latest=False)

    def load(self, directory: Path, tag: str) -> None:
        path, _ = self.engine.load_checkpoint(
            str(directory), tag=tag, load_optimizer_states=True, load_lr_scheduler_states=True
        )
        if path is None:
            raise FileNotFoundError(f"no DeepSpeed checkpoint {tag!r} in {directory}")
        apply_peak_values(self.engine.lr_scheduler, self.optim.lr, self.optim.weight_decay)


class PlainReplica:
    """The same surface over a bare module, torch optimizer and schedule (one process)."""

    def __init__(
        self, model: nn.Module, *, optim: OptimConfig, grad_accum_steps: int, clock: RunClock
    ) -> None:
        self.module = model
        self.optim = optim
        self.optimizer = build_optimizer(model.parameters(), optim)
        self.scheduler = build_scheduler(self.optimizer, optim, clock)
        self.grad_clip = optim.grad_clip
        self.grad_accum_steps = grad_accum_steps
        self.micro_steps = 0

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.module(features)

    def backward(self, loss: torch.Tensor) -> None:
        (loss / self.grad_accum_steps).backward()

    def step(self) -> None:
        self.micro_steps += 1
        if self.micro_steps % self.grad_accum_steps:
            return
        if self.grad_clip > 0:
            nn.utils.clip_grad_norm_(self.module.parameters(), self.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()

    def lr(self) -> float:
        return float(self.scheduler.get_last_lr()[0])

    def masters(self) -> Masters:
        """A torch optimizer steps on the fp32 parameters themselves."""
        return Masters([p.data for p in self.module.parameters()], partitioned=False)

    def masters_changed(self) -> None:
        """The masters are the parameters: nothing to copy."""

    def full_state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().float().cpu().clone() for k, v in self.module.state_dict().items()}

    def save(self, directory: Path, tag: str) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        torch.save(
            {
                "model": self.module.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "micro_steps": self.micro_steps,
            },
            directory / f"{tag}.pt",
        )

    def load(self, directory: Path, tag: str) -> None:
        state = torch.load(directory / f"{tag}.pt", weights_only=True)
        self.module.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.micro_steps = state["micro_steps"]
        apply_peak_values(self.scheduler, self.optim.lr, self.optim.weight_decay)
