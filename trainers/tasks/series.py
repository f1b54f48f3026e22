"""Multi-step forecasting of a series (``data.kind: series``): windows of history cut from one
series and split by contiguous time blocks (``trainers.data.series``); a model takes a history
and answers its forecast, scored beside the naive and seasonal naive baselines."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from trainers.config import RunSettings
from trainers.data.forecast_scores import baseline_forecasts, errors_by_step
from trainers.data.series import (
    BUNDLED_SERIES,
    SeriesInput,
    block_spans,
    prepare_series,
    uneven_spacing,
)
from trainers.data.sources import read_table
from trainers.data.splits import check_parts, subsample_training
from trainers.dataset import Dataset, Split
from trainers.spec import ModelSpec
from trainers.tasks.base import CheckInputs, DataReport, PreparedData, Task, model_spec

if TYPE_CHECKING:
    import pandas as pd

FORECAST_FILE = "forecast.png"
FORECAST_ERRORS_FILE = "forecast_errors.json"


def prepare(cfg: RunSettings) -> PreparedData:
    """Windows split by time blocks, then ``data.train_fraction`` of red and blue."""
    series = prepare_series(
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
    schema = _schema(dataset)
    spec = model_spec(cfg, dataset, schema.width, preprocessing=series.spec_entries())
    return PreparedData(dataset, split, spec, series.reference_metrics)


def _schema(dataset: Dataset) -> SeriesInput:
    assert isinstance(dataset.schema, SeriesInput)
    return dataset.schema


def example_input(spec: ModelSpec, count: int) -> list:
    """``count`` histories of ``data.window`` steps of zeros."""
    window = SeriesInput.of_model(spec).window
    return [[[0.0] * spec.in_features] * window for _ in range(count)]


def check_inputs(spec: ModelSpec, source: str | None, count: int) -> CheckInputs:
    """One history: the bundled series' first window, and the values of each target that
    followed it (``{target: values}``); otherwise a history of zeros."""
    if source not in BUNDLED_SERIES:
        return CheckInputs(example_input(spec, 1))
    schema = SeriesInput.of_model(spec)
    values = schema.from_frame(read_table(source))  # by time, the value columns in order
    window, horizon = schema.window, schema.horizon
    following = values[window : window + horizon, schema.target_index]
    followed = dict(zip(schema.targets, following.T.tolist(), strict=True))
    return CheckInputs([values[:window].tolist()], followed)


def answer(schema: Any, predictions: np.ndarray) -> pd.DataFrame:
    """Forecasts as a frame of ``step`` and one column per target."""
    assert isinstance(schema, SeriesInput)
    return schema.forecast_frame(predictions)


def describe(dataset: Dataset, split: Split) -> DataReport:
    """The series' windows by part, and the time each part's blocks cover."""
    schema, raw = _schema(dataset), dataset.raw
    assert raw is not None
    covariates = [c for c in schema.feature_names if c not in schema.targets]
    told = f"; covariates {', '.join(covariates)}" if covariates else ""
    lines = [
        f"series: {len(raw)} steps; forecast {', '.join(schema.targets)} {schema.horizon} steps "
        f"ahead from {schema.window}{told}"
    ]
    warnings = []
    uneven = uneven_spacing(raw[schema.time_column])
    if uneven:
        warnings.append(
            f"{schema.time_column}: {uneven}; a window is a count of steps "
            f"({schema.window} of history, {schema.horizon} ahead), not a span of time"
        )
    times = raw[schema.time_column].astype(str).tolist()
    span = schema.window + schema.horizon
    for part in ("red", "blue", "val", "test"):
        starts = getattr(split, part)
        blocks = ", ".join(f"{times[a]} to {times[b]}" for a, b in block_spans(starts, span))
        lines.append(f"  {part:<5} {len(starts):>5} windows in {blocks}")
    params = {
        "series.targets": ",".join(schema.targets),
        "series.covariates": ",".join(covariates) or "-",
        "series.steps": str(len(raw)),
        "series.windows": str(len(dataset.labels)),
    }
    return DataReport(lines=lines, warnings=warnings, params=params)


def artifacts(dataset: Dataset, split: Split, spec: ModelSpec, predicted: np.ndarray) -> dict:
    """The forecasts over the test block (a figure), and the model's and the baselines' mean
    absolute error at each step ahead on the same test windows."""
    predicted = np.asarray(predicted, np.float64)
    schema, test = _schema(dataset), split.test
    truth = dataset.labels[test].astype(np.float64)
    windows = dataset.features[test].astype(np.float64)
    forecasts = baseline_forecasts(
        windows, schema.horizon, schema.target_index, spec.preprocessing.get("season")
    )
    errors = errors_by_step({"model": predicted, **forecasts}, truth)
    return {FORECAST_FILE: _forecast_plot(dataset, split, predicted), FORECAST_ERRORS_FILE: errors}


def _forecast_plot(dataset: Dataset, split: Split, predicted: np.ndarray) -> Any:
    """The first target over the test block, and the forecasts of every ``horizon``-th test
    window (so they tile the block without overlapping)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    schema, raw = _schema(dataset), dataset.raw
    assert raw is not None
    target, starts = schema.targets[0], split.test
    times = raw[schema.time_column]
    shown = slice(int(starts[0]), int(starts[-1]) + schema.window + schema.horizon)
    figure, axis = plt.subplots(figsize=(7, 4))
    axis.plot(times[shown], raw[target][shown], color="black", linewidth=1, label=target)
    for position in range(0, len(starts), schema.horizon):
        first = int(starts[position]) + schema.window
        steps = times[first : first + schema.horizon]
        label = "forecast" if position == 0 else None
        axis.plot(steps, predicted[position, :, 0], color="C1", linewidth=1.5, label=label)
    axis.set_title(f"{schema.horizon}-step forecasts over the test block")
    axis.legend()
    figure.autofmt_xdate()
    figure.tight_layout()
    return figure


TASK = Task(
    kind="series",
    prepare=prepare,
    input_schema=SeriesInput.of_model,
    example_input=example_input,
    check_inputs=check_inputs,
    describe=describe,
    answer=answer,
    artifacts=artifacts,
    batch_prediction=False,  # a history spans rows that Ray Data may hand to different batches
)
