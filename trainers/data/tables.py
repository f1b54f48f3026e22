"""Tables (``data.kind: table``): validating the columns and labels of a table, and encoding it
with the preprocessing fitted on the training pool (``trainers.data.preprocessing``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from trainers.config import DataConfig
from trainers.data.preprocessing import fit as fit_preprocessing
from trainers.data.preprocessing import infer_type
from trainers.data.sources import BUNDLED_LABELS, PARTS_ATTR, read_table
from trainers.data.splits import split_roles
from trainers.dataset import Dataset
from trainers.errors import DataError, InputError

if TYPE_CHECKING:
    import pandas as pd

MAX_CLASSES_FOR_INTEGER_LABELS = 20


def _infer_task(labels: pd.Series) -> str:
    import pandas as pd

    if not pd.api.types.is_numeric_dtype(labels) or pd.api.types.is_bool_dtype(labels):
        return "classification"
    if pd.api.types.is_integer_dtype(labels):
        return (
            "classification" if labels.nunique() <= MAX_CLASSES_FOR_INTEGER_LABELS else "regression"
        )
    return "regression"


@dataclass(frozen=True)
class Table:
    """A validated table before encoding: raw feature columns, labels, and how to encode them."""

    frame: pd.DataFrame  # the feature columns as read (rows without a label left out)
    labels: np.ndarray
    task: str
    classes: list
    rules: dict  # column -> its data.features entry
    max_one_hot: int
    has_gaps: dict[str, bool]
    dropped_labels: int  # rows left out for a missing label
    dropped_rows: int  # rows left out by a ``missing: drop`` rule
    row_numbers: np.ndarray | None = None  # each row's position among the source's data rows
    row_keys: np.ndarray | None = None  # each row's key for data.split: hash (row_keys_of)
    split_roles: np.ndarray | None = None  # each row's train, val or test (data.split_column)


def prepare_table(frame: pd.DataFrame, cfg: DataConfig) -> Table:
    """Validate a table's columns and labels; every problem raises one clear DataError."""

    label = cfg.label or BUNDLED_LABELS.get(cfg.source)
    if label is None:
        raise DataError(f"data.label must name the label column of {cfg.source}")
    columns = [str(c) for c in frame.columns]
    frame = frame.set_axis(columns, axis=1)
    row_key = [cfg.row_key] if cfg.row_key else []
    split_column = [cfg.split_column] if cfg.split_column else []
    named = {"label": [label], "drop": cfg.drop, "features": list(cfg.features)}
    named |= {"row_key": row_key, "split_column": split_column}
    key = [*row_key, *split_column]  # not features either
    for name, names in named.items():
        unknown = [name for name in names if name not in columns]
        if unknown:
            what = "label column" if name == "label" else f"data.{name} names column(s)"
            raise DataError(
                f"{what} {', '.join(map(repr, unknown))} not found in {cfg.source}; columns are: "
                + ", ".join(columns)
            )
    clash = sorted(set(cfg.features) & ({label} | set(cfg.drop) | set(key)))
    if clash:
        raise DataError(
            f"data.features names {clash}, which is the label or dropped (or data.row_key, "
            "data.split_column)"
        )
    labels = frame[label]
    has_label = labels.notna().to_numpy()
    feature_frame = frame.drop(columns=list(dict.fromkeys([label, *cfg.drop, *key])))
    if feature_frame.shape[1] == 0:
        raise DataError(f"{cfg.source} has no feature columns besides the label {label!r}")
    check_declared_types(feature_frame, cfg)
    drop_rows = np.zeros(len(frame), dtype=bool)
    for name, rule in cfg.features.items():
        if rule.missing == "drop":
            drop_rows |= feature_frame[name].isna().to_numpy()
    keep = has_label & ~drop_rows
    has_gaps = {name: bool(feature_frame[name][keep].isna().any()) for name in feature_frame}
    feature_frame = feature_frame[keep].reset_index(drop=True)
    labels = labels[keep].reset_index(drop=True)
    if len(labels) == 0:
        raise DataError(f"label column {label!r} has no values")
    task, y, class_list = encode_labels(labels, cfg.task, label)
    return Table(
        frame=feature_frame,
        labels=y,
        task=task,
        classes=class_list,
        rules=dict(cfg.features),
        max_one_hot=cfg.max_one_hot,
        has_gaps=has_gaps,
        dropped_labels=int((~has_label).sum()),
        dropped_rows=int((has_label & drop_rows).sum()),
        row_numbers=np.flatnonzero(keep),
        row_keys=row_keys_of(frame, cfg)[keep],
        split_roles=(
            split_roles(frame[cfg.split_column][keep], cfg.split_column, "row(s)")
            if cfg.split_column
            else None
        ),
    )


def row_keys_of(frame: pd.DataFrame, cfg: DataConfig) -> np.ndarray:
    """Every row's key (``trainers.data.keyed_split``): its ``data.row_key`` value, or its
    position in its file with the file's path (one part named by the source without parts)."""
    from trainers.data.keyed_split import position_keys

    if cfg.row_key:
        return frame[cfg.row_key].to_numpy()
    parts = frame.attrs.get(PARTS_ATTR) or [(cfg.source, len(frame))]
    return np.concatenate([position_keys(path, np.arange(rows)) for path, rows in parts])


def encode_labels(labels: pd.Series, task: str | None, label: str) -> tuple[str, np.ndarray, list]:
    """(task, labels as class indices or float32 values, the classes); ``task`` inferred when
    None."""
    import pandas as pd

    task = task or _infer_task(labels)
    if task == "classification":
        classes, codes = np.unique(labels.to_numpy(), return_inverse=True)
        if len(classes) < 2:
            raise DataError(f"label column {label!r} has a single class; nothing to learn")
        return (
            task,
            codes.astype(np.int64),
            [c.item() if hasattr(c, "item") else c for c in classes],
        )
    if not pd.api.types.is_numeric_dtype(labels):
        raise DataError(f"data.task is regression but label column {label!r} is not numeric")
    values = labels.to_numpy(dtype=np.float64)
    if not np.isfinite(values).all():
        raise DataError(f"label column {label!r} has infinite values")
    return task, values.astype(np.float32), []


def check_declared_types(frame: pd.DataFrame, cfg: DataConfig) -> None:
    """A column declared (or inferred) a number must hold finite numbers or gaps only."""
    import pandas as pd

    for name in frame.columns:
        rule = cfg.features.get(name)
        values = frame[name]
        if infer_type(values, rule.type if rule else None) != "number":
            continue
        if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
            sample = values.dropna().iloc[0] if values.notna().any() else None
            raise DataError(
                f"column {name!r} of {cfg.source} is declared a number but holds {sample!r}; "
                "declare it a category (data.features) or fix the data"
            )
        infinite = int(np.isinf(values.to_numpy(dtype=np.float64, na_value=np.nan)).sum())
        if infinite:
            raise DataError(f"infinite values in {cfg.source}: {infinite} cell(s) in column {name}")


def encode(table: Table, fit_rows: np.ndarray) -> Dataset:
    """The table as a Dataset, its preprocessing fitted on ``fit_rows`` (the training pool)."""
    try:
        fitted = fit_preprocessing(
            table.frame.iloc[fit_rows], table.rules, table.max_one_hot, table.has_gaps
        )
        features = fitted.transform(table.frame)
    except InputError as exc:
        raise DataError(str(exc)) from None
    return Dataset(
        features=features,
        labels=table.labels,
        task=table.task,
        feature_names=list(table.frame.columns),
        classes=table.classes,
        preprocessing=fitted,
        raw=table.frame,
        dropped_labels=table.dropped_labels,
        dropped_rows=table.dropped_rows,
        row_numbers=table.row_numbers,
    )


def load_table(cfg: DataConfig) -> Table:
    """Read and validate the configured data."""
    return prepare_table(read_table(cfg.source), cfg)


def load_dataset(cfg: DataConfig) -> Dataset:
    """Read, validate and encode the configured data, the preprocessing fitted on all of it (a
    training run fits on P' only: ``plan_run``)."""
    table = load_table(cfg)
    return encode(table, np.arange(len(table.labels)))
