"""The training budget in rounds, and the config sections the loop reads: no torch here, so the
driver sizes a run (and rejects bad input) without importing it."""

from __future__ import annotations

import math
from dataclasses import dataclass

from trainers.config import DeepSpeedConfig, OptimConfig, StrategyConfig
from trainers.engine.clock import RunClock


@dataclass(frozen=True)
class LoopConfig:
    """What the workers read of the config (``trainers.loop.plan.loop_config``), with the sizes
    derived from it."""

    strategy: StrategyConfig
    optim: OptimConfig
    deepspeed: DeepSpeedConfig
    micro_batch: int  # samples per worker per micro-step (:func:`micro_batch_size`)
    use_gpu: bool = False
    seed: int = 0
    checkpoint_every: int = 5
    select: str = "best"  # the model kept: best evaluation by val_loss, or the last
    data_kind: str = "table"  # the task's ``data.kind``

    @property
    def grad_accum_steps(self) -> int:
        return self.deepspeed.grad_accum_steps


def micro_batch_size(batch_size: int, num_workers: int, grad_accum_steps: int) -> int:
    """The samples each worker takes per micro-step: ``optim.batch_size`` over the workers and
    the accumulation steps, which must divide it (the config refuses it otherwise)."""
    shards = num_workers * grad_accum_steps
    if batch_size % shards:
        raise ValueError(
            f"optim.batch_size ({batch_size}) must be a multiple of "
            f"scaling.num_workers x deepspeed.grad_accum_steps ({shards})"
        )
    return batch_size // shards


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
