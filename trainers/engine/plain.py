"""The ``Engine`` surface over a bare module, torch optimizer and schedule, in one process: unit
tests and the single-process baseline of the benchmark train with it."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from trainers.config import OptimConfig
from trainers.engine.base import build_optimizer
from trainers.engine.clock import RunClock
from trainers.engine.masters import Masters
from trainers.engine.schedules import apply_peak_values, build_scheduler


class PlainEngine:
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
