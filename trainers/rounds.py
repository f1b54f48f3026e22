"""The training budget in rounds, and the config sections the loop reads: no torch here, so the
driver sizes a run (and rejects bad input) without importing it."""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

from trainers.config import OptimConfig, StrategyConfig


@dataclass(frozen=True)
class LoopConfig:
    """The config sections the loop reads."""

    strategy: StrategyConfig
    optim: OptimConfig
    grad_accum_steps: int = 1
    seed: int = 0
    checkpoint_every: int = 5
    select: str = "best"  # the model kept: best evaluation by val_loss, or the last


@dataclass(frozen=True)
class RoundPlan:
    """How the budget of ``optim.epochs`` passes over P' becomes rounds of 2K steps."""

    num_rounds: int
    steps_per_replica: dict[str, int]  # optimizer steps each replica takes per round

    def clock(self, name: str) -> RunClock:
        """Replica ``name``'s optimizer steps on the run's clock."""
        return RunClock(
            round_steps=sum(self.steps_per_replica.values()),
            replica_steps=self.steps_per_replica[name],
            num_rounds=self.num_rounds,
        )


@dataclass(frozen=True)
class RunClock:
    """The clock learning-rate schedules run on: 2K steps a round, for either strategy.

    A red-blue replica takes K_red (or K_blue) of its own steps a round where standard training
    takes 2K; its step s sits at s * 2K / K_red on this clock. So ``optim.warmup_steps`` and
    ``optim.step_every`` mean the same point of the run for both strategies, and red, blue and a
    standard model have the same learning rate at the end of every round.
    """

    round_steps: int  # 2K
    replica_steps: int  # this replica's optimizer steps per round
    num_rounds: int

    def position(self, step: int) -> Fraction:
        """Where the replica's ``step`` (0-based) falls on the clock (exact, no rounding)."""
        return Fraction(step * self.round_steps, self.replica_steps)

    @property
    def total(self) -> int:
        return self.num_rounds * self.round_steps


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
