"""A streamed table's fitted parts, from its statistics (``trainers.data.table_stats``): the task
and classes, the preprocessing and standardization the in-memory path would fit on P', each
part's size, and the in-memory sample of each part the loop monitors rounds on. Pure: no Ray."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from trainers.data.keyed_split import BLUE, PART_NAMES, RED
from trainers.data.preprocessing import FILLING, Column, Preprocessing, category_column
from trainers.data.table_stats import ColumnStats, Layout, Moments, TableStats
from trainers.data.tables import MAX_CLASSES_FOR_INTEGER_LABELS
from trainers.dataset import Dataset, Split
from trainers.errors import DataError


@dataclass(frozen=True)
class Standardization:
    """The model's input standardization (the dense block) and, for regression, its target's,
    as ``trainers.families.scaled.Scaled`` fits them on P' in memory."""

    input_mean: np.ndarray
    input_std: np.ndarray
    target_mean: float | None = None
    target_std: float | None = None


@dataclass(frozen=True)
class StreamedTable:
    """Everything a streamed run is planned from."""

    task: str
    classes: list
    preprocessing: Preprocessing
    standardization: Standardization
    sizes: dict[str, int]  # rows of test, val, red and blue
    pool_class_counts: np.ndarray | None  # classification: each class's rows in P'
    sample: Dataset  # up to sample_rows rows of each part, encoded, with their raw columns
    sample_split: Split
    dropped_labels: int
    dropped_rows: int


def finish(stats: TableStats, layout: Layout) -> StreamedTable:
    """The fitted table from the statistics of all of its batches; DataError when unusable."""
    label = layout.label
    if sum(stats.rows) == 0:
        raise DataError(f"label column {label!r} has no values")
    task = _task(stats, layout)
    classes: list = []
    pool_counts = None
    if task == "classification":
        if stats.label_counts is None:
            raise DataError(f"label column {label!r} has too many distinct values for classes")
        classes = sorted(stats.label_counts)
        if len(classes) < 2:
            raise DataError(f"label column {label!r} has a single class; nothing to learn")
        counts = stats.pool_label_counts or {}
        pool_counts = np.array([counts.get(c, 0) for c in classes], dtype=np.int64)
    elif layout.label_type == "other":
        raise DataError(f"data.task is regression but label column {label!r} is not numeric")
    fitted = fit_from_stats(stats, layout)
    target = (stats.pool_labels.mean, max(stats.pool_labels.std, 1e-8))
    sample, split = _sample(stats, layout, fitted, task, classes)
    return StreamedTable(
        task=task,
        classes=classes,
        preprocessing=fitted,
        standardization=Standardization(
            *dense_moments(stats, fitted),
            *(target if task == "regression" else (None, None)),
        ),
        sizes=stats.sizes,
        pool_class_counts=pool_counts,
        sample=sample,
        sample_split=split,
        dropped_labels=stats.dropped_labels,
        dropped_rows=stats.dropped_rows,
    )


def _task(stats: TableStats, layout: Layout) -> str:
    """``data.task``, or inferred as ``trainers.data.tables`` infers it."""
    if layout.data.task:
        return layout.data.task
    if layout.label_type == "other":
        return "classification"
    if layout.label_type == "integer":
        counts = stats.label_counts
        few = counts is not None and len(counts) <= MAX_CLASSES_FOR_INTEGER_LABELS
        return "classification" if few else "regression"
    return "regression"


def fit_from_stats(stats: TableStats, layout: Layout) -> Preprocessing:
    """The columns ``trainers.data.preprocessing.fit`` fits on P', from P''s statistics."""
    columns = []
    for name, kind in layout.kinds.items():
        seen = stats.columns.get(name, ColumnStats())
        if kind == "category":
            max_one_hot = layout.data.max_one_hot
            columns.append(category_column(name, seen.counts, seen.missing > 0, max_one_hot))
            continue
        rule = layout.data.features.get(name)
        missing = getattr(rule, "missing", None) or ("mean" if stats.gaps.get(name) else "none")
        fill = None
        if missing in ("mean", "median"):
            if seen.present.n == 0:
                raise DataError(f"column {name!r} has no values in the training pool to fill with")
            values = np.concatenate(seen.values) if seen.values else np.zeros(0)
            fill = seen.present.mean if missing == "mean" else float(np.median(values))
        elif missing == "constant":
            fill = float(getattr(rule, "fill_value", 0.0))
        columns.append(Column(name, kind, missing=missing, fill=fill))
    return Preprocessing(tuple(columns))


def dense_moments(stats: TableStats, fitted: Preprocessing) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation (floored as ``Scaled`` floors it) of each column of the
    encoded dense block over P': a gap counts as its fill value, a category as its indicator."""
    pool = stats.rows[RED] + stats.rows[BLUE]
    means, stds = [], []
    for column in fitted.columns:
        seen = stats.columns.get(column.name, ColumnStats())
        if column.type != "category":
            filled = seen.present
            if column.missing in FILLING and seen.missing:
                filled = filled.merged(Moments(seen.missing, float(column.fill or 0.0), 0.0))
            means.append(filled.mean)
            stds.append(filled.std)
        elif not column.embedded:
            counts = [seen.counts.get(c, 0) for c in column.categories]
            counts += [seen.missing] if column.had_missing else []
            for count in counts:
                share = count / max(1, pool)
                means.append(share)
                stds.append(float(np.sqrt(share * (1.0 - share))))
    std = np.asarray(stds, dtype=np.float32)
    return np.asarray(means, dtype=np.float32), np.where(std > 1e-8, std, 1.0).astype(np.float32)


def encode_labels(values: np.ndarray, task: str, classes: list) -> np.ndarray:
    """Labels as the model trains on them: class indices (int64), or float32 values."""
    if task != "classification":
        return np.asarray(values, dtype=np.float32)
    import pandas as pd

    codes = pd.Index(classes).get_indexer(pd.Index(values))
    return codes.astype(np.int64)


def _sample(
    stats: TableStats, layout: Layout, fitted: Preprocessing, task: str, classes: list
) -> tuple[Dataset, Split]:
    """The sampled rows of every part as one small Dataset (raw columns kept) and its Split."""
    import pandas as pd

    frames = [stats.samples[code] for code in PART_NAMES if code in stats.samples]
    rows = pd.concat(frames, ignore_index=True)
    raw = rows[layout.feature_columns]
    bounds = np.cumsum([0] + [len(f) for f in frames])
    parts = {
        PART_NAMES[code]: np.arange(bounds[i], bounds[i + 1])
        for i, code in enumerate(c for c in PART_NAMES if c in stats.samples)
    }
    dataset = Dataset(
        features=fitted.transform(raw),
        labels=encode_labels(rows[layout.label].to_numpy(), task, classes),
        task=task,
        feature_names=list(raw.columns),
        classes=classes,
        preprocessing=fitted,
        raw=raw,
        dropped_labels=stats.dropped_labels,
        dropped_rows=stats.dropped_rows,
    )
    empty = np.zeros(0, dtype=np.int64)
    split = Split(
        test=parts.get("test", empty),
        val=parts.get("val", empty),
        red=parts.get("red", empty),
        blue=parts.get("blue", empty),
    )
    return dataset, split
