"""The run clock the learning-rate schedules read: no torch here, so the driver sizes a run
without importing it."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction


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
