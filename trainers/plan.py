"""From a validated config to everything a run is made of: data, split, model spec, rounds.

Pure, torch-free and Ray-free: the driver calls it before Ray starts (so bad data fails with
exit code 2) and ships the plan to the workers, where ``trainers.loop`` runs it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Protocol

import numpy as np

from trainers.config import DataConfig, DeepSpeedConfig, OptimConfig, Section, StrategyConfig
from trainers.data import (
    DataError,
    Dataset,
    Split,
    Table,
    check_parts,
    encode,
    load_table,
    make_split,
    read_table,
    subsample_training,
    with_label_noise,
)
from trainers.drift import summarize
from trainers.families import family_of
from trainers.families.base import Family
from trainers.rounds import LoopConfig, RoundPlan, plan_rounds
from trainers.sequences import prepare_sequences
from trainers.series import Series, prepare_series
from trainers.spec import ModelSpec


class _Scaling(Protocol):
    @property
    def num_workers(self) -> int: ...


class _Checkpoint(Protocol):
    @property
    def every_rounds(self) -> int: ...
    @property
    def select(self) -> str: ...


class RunSettings(Protocol):
    """The config sections a plan reads (``orchestrator.config.RedblueConfig`` has them)."""

    @property
    def seed(self) -> int: ...
    @property
    def data(self) -> DataConfig: ...
    @property
    def model(self) -> Section: ...
    @property
    def optim(self) -> OptimConfig: ...
    @property
    def strategy(self) -> StrategyConfig: ...
    @property
    def deepspeed(self) -> DeepSpeedConfig: ...
    @property
    def scaling(self) -> _Scaling: ...
    @property
    def checkpoint(self) -> _Checkpoint: ...


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

    @property
    def family(self) -> Family:
        return family_of(self.spec.kind)

    def for_workers(self) -> RunPlan:
        """This plan without the raw table (workers train on the encoded features)."""
        return replace(self, dataset=replace(self.dataset, raw=None))


def plan_run(cfg: RunSettings) -> RunPlan:
    """Load and split the data and size the rounds; raises DataError on unusable data."""
    kind = str(cfg.model.model_dump()["kind"])
    takes = family_of(kind).data_kinds
    if cfg.data.kind not in takes:
        raise DataError(
            f"model.kind {kind} takes data.kind: {' or '.join(takes)}, but data.kind is "
            f"{cfg.data.kind}"
        )
    if cfg.data.kind == "series":
        return _plan_series(cfg)
    if cfg.data.kind == "sequence":
        table: Table | Dataset = prepare_sequences(read_table(cfg.data.source), cfg.data)
    else:
        table = load_table(cfg.data)
    split = make_split(
        table,
        test_fraction=cfg.data.test_fraction,
        val_fraction=cfg.strategy.val_fraction,
        red_ratio=cfg.strategy.red_ratio,
        seed=cfg.seed,
        num_workers=cfg.scaling.num_workers,
    )
    stratify = table.task == "classification"
    split = subsample_training(split, table.labels, cfg.data.train_fraction, cfg.seed, stratify)
    check_parts(split, cfg.scaling.num_workers, len(table.labels))
    if isinstance(table, Table):
        dataset = encode(table, split.train)  # preprocessing fitted on P' only
        spec = _table_spec(cfg, dataset, split)
    else:
        dataset = table
        spec = _sequence_spec(cfg, dataset)
    if cfg.data.label_noise > 0:
        dataset = with_label_noise(dataset, split.train, cfg.data.label_noise, cfg.seed)
    weights = None
    if cfg.optim.class_weights == "balanced" and dataset.task == "classification":
        weights = balanced_weights(dataset.labels[split.train], dataset.num_outputs)
    return RunPlan(
        dataset, split, spec, _loop(cfg), _rounds(cfg, len(split.train)), class_weights=weights
    )


def _plan_series(cfg: RunSettings) -> RunPlan:
    """A forecasting run: windows split by time blocks (``trainers.series``)."""
    series: Series = prepare_series(
        read_table(cfg.data.source),
        cfg.data,
        val_fraction=cfg.strategy.val_fraction,
        red_ratio=cfg.strategy.red_ratio,
        workers=cfg.scaling.num_workers,
    )
    dataset = series.dataset
    split = subsample_training(
        series.split, dataset.labels, cfg.data.train_fraction, cfg.seed, stratify=False
    )
    check_parts(split, cfg.scaling.num_workers, len(dataset.labels))
    if cfg.data.label_noise > 0:
        dataset = with_label_noise(dataset, split.train, cfg.data.label_noise, cfg.seed)
    options = cfg.model.model_dump()
    assert dataset.series is not None
    spec = ModelSpec(
        kind=str(options["kind"]),
        task=dataset.task,
        in_features=dataset.series.width,
        out_features=dataset.num_outputs,
        options=options,
        feature_names=list(dataset.feature_names),
        preprocessing=series.spec_entries(),
    )
    return RunPlan(
        dataset,
        split,
        spec,
        _loop(cfg),
        _rounds(cfg, len(split.train)),
        reference_metrics=series.reference_metrics,
    )


def _loop(cfg: RunSettings) -> LoopConfig:
    return LoopConfig(
        strategy=cfg.strategy,
        optim=cfg.optim,
        grad_accum_steps=cfg.deepspeed.grad_accum_steps,
        seed=cfg.seed,
        checkpoint_every=cfg.checkpoint.every_rounds,
        select=cfg.checkpoint.select,
    )


def _rounds(cfg: RunSettings, train_size: int) -> RoundPlan:
    return plan_rounds(
        train_size=train_size,
        batch_size=cfg.optim.batch_size,
        epochs=cfg.optim.epochs,
        phase_steps=cfg.strategy.phase_steps,
        red_ratio=cfg.strategy.red_ratio,
        kind=cfg.strategy.kind,
    )


def _table_spec(cfg: RunSettings, dataset: Dataset, split: Split) -> ModelSpec:
    fitted = dataset.preprocessing
    assert fitted is not None
    options = cfg.model.model_dump()  # the family's section, ``kind`` included
    dense = dataset.features[split.train][:, : len(fitted.dense_names)]
    return ModelSpec(
        kind=str(options["kind"]),
        task=dataset.task,
        in_features=fitted.width,
        out_features=dataset.num_outputs,
        options=options,
        feature_names=list(dataset.feature_names),
        classes=list(dataset.classes),
        input_summary=summarize(dense, fitted.dense_names),
        preprocessing=fitted.to_dict(),
    )


def _sequence_spec(cfg: RunSettings, dataset: Dataset) -> ModelSpec:
    sequence = dataset.sequence
    assert sequence is not None
    options = cfg.model.model_dump()
    return ModelSpec(
        kind=str(options["kind"]),
        task=dataset.task,
        in_features=sequence.width,
        out_features=dataset.num_outputs,
        options=options,
        feature_names=list(dataset.feature_names),
        classes=list(dataset.classes),
        preprocessing={"sequence": asdict(sequence)},
    )


def balanced_weights(labels: np.ndarray, num_classes: int) -> tuple[float, ...]:
    """scikit-learn's "balanced": n / (classes * count) per class (a class absent from the
    training pool weighs 1)."""
    counts = np.bincount(labels, minlength=num_classes)
    weights = np.where(counts > 0, len(labels) / (num_classes * np.maximum(counts, 1)), 1.0)
    return tuple(float(w) for w in weights)
