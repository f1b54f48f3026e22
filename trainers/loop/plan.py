"""From a validated config to everything a run is made of: data, split, model spec, rounds, and
the settings the workers read, each derived size computed here once.

Pure, torch-free and Ray-free: the driver calls it before Ray starts (so bad data fails with
exit code 2) and ships the plan to the workers, where ``trainers.loop.trainer`` runs it. The
workers take the plan only, never the config again.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from trainers.compress.settings import Teacher
from trainers.config import RunSettings
from trainers.data.row_stream import StreamPlan
from trainers.data.splits import add_label_noise
from trainers.dataset import Dataset, Split
from trainers.errors import DataError
from trainers.families import family_of
from trainers.families.base import Family
from trainers.loop.rounds import LoopConfig, RoundPlan, micro_batch_size, plan_rounds
from trainers.spec import ModelSpec
from trainers.tasks import task_of
from trainers.tasks.base import Task


@dataclass(frozen=True)
class RunPlan:
    """One run: what every worker needs to train, passed as one object."""

    dataset: Dataset
    split: Split
    spec: ModelSpec
    loop: LoopConfig
    rounds: RoundPlan
    class_weights: tuple[float, ...] | None = None  # optim.class_weights: balanced
    # Metrics of reference forecasts on T, logged beside the model's (series: the baselines).
    reference_metrics: dict[str, float] = field(default_factory=dict)
    # The rows of P' whose labels data.label_noise changed (None without it): the truth that
    # label-issue detection is measured against.
    noisy_rows: np.ndarray | None = None
    # A streamed table (data.streaming): the workers stream its parts; ``dataset`` and ``split``
    # are then a sample of each part (the rounds' monitoring, the logged examples).
    stream: StreamPlan | None = None
    # redblue compress: the replicas start from these weights (a pruned teacher's) ...
    initial_state: dict[str, np.ndarray] | None = None
    # ... or train against a teacher's outputs as well (distillation).
    teacher: Teacher | None = None

    @property
    def family(self) -> Family:
        return family_of(self.spec.kind)

    @property
    def task(self) -> Task:
        return task_of(self.family.task or self.loop.data_kind)

    def model_sample(self) -> Any:
        """A few inputs of the trained model as a user gives them (its logged signature): rows
        of T, or a task's example requests (a generative model's)."""
        if self.task.asks_requests:
            import pandas as pd

            return pd.DataFrame(self.task.example_input(self.spec, 5))
        return self.dataset.sample_input(self.split.test[:5])

    def for_workers(self) -> RunPlan:
        """This plan without the raw table (workers train on the encoded features)."""
        return replace(self, dataset=replace(self.dataset, raw=None))


def plan_run(cfg: RunSettings) -> RunPlan:
    """Load and split the data and size the rounds; raises DataError on unusable data."""
    kind = str(cfg.model.model_dump()["kind"])
    family = family_of(kind)
    takes = family.data_kinds
    if cfg.data.kind not in takes:
        raise DataError(
            f"model.kind {kind} takes data.kind: {' or '.join(takes)}, but data.kind is "
            f"{cfg.data.kind}"
        )
    prepared = task_of(family.task or cfg.data.kind).prepare(cfg)
    if cfg.strategy.clean != "off" and prepared.dataset.task != "classification":
        raise DataError(
            f"strategy.clean needs classification (it finds wrong class labels); the task here is "
            f"{prepared.dataset.task}: set strategy.clean: off"
        )
    dataset, noisy_rows = add_label_noise(prepared.dataset, prepared.split, cfg)
    split = prepared.split
    weights = None
    if cfg.optim.class_weights == "balanced" and dataset.task == "classification":
        weights = balanced_weights(dataset.labels[split.train], dataset.num_outputs)
    return RunPlan(
        dataset,
        split,
        prepared.spec,
        loop_config(cfg),
        rounds_of(cfg, len(split.train)),
        class_weights=weights,
        reference_metrics=prepared.reference_metrics,
        noisy_rows=noisy_rows,
    )


def loop_config(cfg: RunSettings) -> LoopConfig:
    """The settings the workers read, from the config's sections."""
    return LoopConfig(
        strategy=cfg.strategy,
        optim=cfg.optim,
        deepspeed=cfg.deepspeed,
        micro_batch=micro_batch_size(
            cfg.optim.batch_size, cfg.scaling.num_workers, cfg.deepspeed.grad_accum_steps
        ),
        use_gpu=cfg.scaling.use_gpu,
        seed=cfg.seed,
        checkpoint_every=cfg.checkpoint.every_rounds,
        select=cfg.checkpoint.select,
        data_kind=cfg.data.kind,
    )


def rounds_of(cfg: RunSettings, train_size: int) -> RoundPlan:
    """The rounds of a run of this config over ``train_size`` training samples."""
    return plan_rounds(
        train_size=train_size,
        batch_size=cfg.optim.batch_size,
        epochs=cfg.optim.epochs,
        phase_steps=cfg.strategy.phase_steps,
        red_ratio=cfg.strategy.red_ratio,
        kind=cfg.strategy.kind,
    )


def balanced_weights(labels: np.ndarray, num_classes: int) -> tuple[float, ...]:
    """scikit-learn's "balanced": n / (classes * count) per class (a class absent from the
    training pool weighs 1)."""
    return balanced_from_counts(np.bincount(labels, minlength=num_classes))


def balanced_from_counts(counts: np.ndarray) -> tuple[float, ...]:
    """:func:`balanced_weights` from each class's count in the training pool."""
    total, num_classes = int(counts.sum()), len(counts)
    weights = np.where(counts > 0, total / (num_classes * np.maximum(counts, 1)), 1.0)
    return tuple(float(w) for w in weights)
