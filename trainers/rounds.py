"""The training budget in rounds, and the config sections the loop reads: no torch here, so the
driver sizes a run (and rejects bad input) without importing it."""

from __future__ import annotations

import math
from dataclasses import dataclass

from trainers.config import OptimConfig, StrategyConfig


@dataclass(frozen=True)
class LoopConfig:
    """The config sections the loop reads."""

    strategy: StrategyConfig
    optim: OptimConfig
    grad_accum_steps: int = 1
    seed: int = 0
    checkpoint_every: int = 5


@dataclass(frozen=True)
class RoundPlan:
    """How the budget of ``optim.epochs`` passes over P' becomes rounds of 2K steps."""

    num_rounds: int
    steps_per_replica: dict[str, int]  # optimizer steps each replica takes per round

    @property
    def total_steps(self) -> dict[str, int]:
        return {name: self.num_rounds * steps for name, steps in self.steps_per_replica.items()}


def plan_rounds(
    *,
    train_size: int,
    batch_size: int,
    epochs: float,
    phase_steps: int,
    red_ratio: float,
    kind: str,
) -> RoundPlan:
    """Both strategies take 2K optimizer steps of ``batch_size`` per round, for the same budget.

    K_red = round(2K·rho) (kept within [1, 2K-1] so that both replicas train), K_blue = 2K - K_red.
    The number of rounds is the budget in steps, rounded up to whole rounds.
    """
    steps_per_round = 2 * phase_steps
    budget_steps = math.ceil(epochs * train_size / batch_size)
    num_rounds = max(1, math.ceil(budget_steps / steps_per_round))
    if kind == "standard":
        return RoundPlan(num_rounds, {"standard": steps_per_round})
    k_red = min(steps_per_round - 1, max(1, math.floor(steps_per_round * red_ratio + 0.5)))
    return RoundPlan(num_rounds, {"red": k_red, "blue": steps_per_round - k_red})
