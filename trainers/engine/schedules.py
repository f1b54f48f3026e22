"""Learning-rate schedules as pure multiplier functions of the optimizer step."""

from __future__ import annotations

import math
from fractions import Fraction
from functools import partial

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

from trainers.config import OptimConfig
from trainers.engine.clock import RunClock


def lr_multiplier(
    step: int | Fraction,
    *,
    schedule: str,
    total_steps: int,
    warmup_steps: int,
    step_every: int,
    step_gamma: float,
) -> float:
    """Factor applied to the peak lr at ``step`` (0-based, on the run clock: may be a fraction).

    Linear warm-up from 1/(warmup+1) to 1 over ``warmup_steps``, then ``constant``, ``step``
    (times ``step_gamma`` every ``step_every`` steps) or ``cosine`` (to 0 at ``total_steps``).
    """
    if step < warmup_steps:
        return float((step + 1) / (warmup_steps + 1))
    after = step - warmup_steps
    if schedule == "constant":
        return 1.0
    if schedule == "step":
        return step_gamma ** int(after // step_every)
    if schedule == "cosine":
        span = max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * float(min(after, span)) / span))
    raise ValueError(f"unknown schedule {schedule!r}")


def clock_multiplier(step: int, *, clock: RunClock, cfg: OptimConfig) -> float:
    """:func:`lr_multiplier` of a replica's own optimizer ``step``, placed on the run clock."""
    return lr_multiplier(
        clock.position(step),
        schedule=cfg.schedule,
        total_steps=clock.total,
        warmup_steps=cfg.warmup_steps,
        step_every=cfg.step_every,
        step_gamma=cfg.step_gamma,
    )


def build_scheduler(optimizer: Optimizer, cfg: OptimConfig, clock: RunClock) -> LambdaLR:
    """A torch LambdaLR driving ``optimizer`` by :func:`clock_multiplier`."""
    return LambdaLR(optimizer, partial(clock_multiplier, clock=clock, cfg=cfg))


def apply_peak_values(scheduler: LambdaLR, lr: float, weight_decay: float) -> None:
    """Make ``lr`` (the peak, before the schedule's factor) and ``weight_decay`` current.

    A restored checkpoint brings back the values it was saved with; the config's win, so a trial
    that population-based training restarts with a perturbed lr trains with it from its next step.
    """
    scheduler.base_lrs = [lr] * len(scheduler.optimizer.param_groups)
    for group, multiplier in zip(
        scheduler.optimizer.param_groups, scheduler.lr_lambdas, strict=True
    ):
        group["initial_lr"] = lr
        group["lr"] = lr * multiplier(scheduler.last_epoch)
        group["weight_decay"] = weight_decay
    scheduler._last_lr = [group["lr"] for group in scheduler.optimizer.param_groups]  # type: ignore[attr-defined]
