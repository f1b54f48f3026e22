"""Tabular data: loading, validation and the deterministic red-blue split.

The split follows ``shared/design/red-blue.md``: a held-out test part T, a validation slice V taken
from the pool, and the rest P' split into red R and blue B (stratified for classification).
Everything is a pure function of the data and the seed; the driver computes the split once and
ships it to the workers, and checkpoints store its fingerprint.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from trainers.config import DataConfig
from trainers.inputs import InputError
from trainers.preprocessing import Preprocessing, infer_type
from trainers.preprocessing import fit as fit_preprocessing

if TYPE_CHECKING:
    import pandas as pd

    from trainers.sequences import SequenceInput
    from trainers.series import SeriesInput

# pandas and scikit-learn are imported where they are used: workers receive a ready Dataset and
# Split, and skipping those imports shortens every worker's start (about 1 s each).
SKLEARN = ("digits", "breast_cancer", "wine", "diabetes")  # scikit-learn's load_<name>
BUNDLED_LABELS = {name: "target" for name in SKLEARN} | {
    "penguins": "species",
    "digits_rows": "digit",
    "co2": "co2",
}
BUNDLED = tuple(BUNDLED_LABELS)
MAX_CLASSES_FOR_INTEGER_LABELS = 20


class DataError(ValueError):
    """The data cannot be used as configured; the message names the problem."""


@dataclass(frozen=True)
class Dataset:
    """Features and labels ready for training; classification labels are class indices."""

    features: np.ndarray  # float32 [n, width]: the raw columns encoded by ``preprocessing``
    labels: np.ndarray  # int64 [n] (classification) or float32 [n] (regression)
    task: str
    feature_names: list[str]  # the raw feature columns, in order
    classes: list  # original class labels, index = class id; empty for regression
    preprocessing: Preprocessing | None = None  # None: numeric columns taken as they are
    raw: pd.DataFrame | None = None  # the raw feature columns (the driver's; not for workers)
    dropped_labels: int = 0
    dropped_rows: int = 0
    # data.kind sequence: each sample's sequence id, and the sequences' input schema; ``raw`` is
    # then the long-format table (id, time and feature columns).
    ids: np.ndarray | None = None
    sequence: SequenceInput | None = None
    # data.kind series: the windows' input schema; each sample is a window of history, its
    # label ``[horizon, targets]``, and ``raw`` the series (time and value columns).
    series: SeriesInput | None = None

    def raw_rows(self, indices: np.ndarray) -> pd.DataFrame | np.ndarray:
        """The raw inputs at ``indices`` as the model's input schema takes them (on the driver,
        which holds the raw table): feature rows, a sequence's long-format rows, or for a
        series the windows' histories ``[n, window, columns]``."""
        import pandas as pd

        if self.series is not None:
            return self.features[indices][..., :-1]
        if self.raw is not None and self.sequence is not None and self.ids is not None:
            chosen = self.raw[self.sequence.id_column].isin(self.ids[indices])
            return self.raw[chosen].reset_index(drop=True)
        if self.raw is not None:
            return self.raw.iloc[indices].reset_index(drop=True)
        return pd.DataFrame(self.features[indices], columns=self.feature_names)

    def sample_input(self, indices: np.ndarray) -> pd.DataFrame:
        """A few raw inputs as a user gives them, for a logged model's signature and example:
        the rows at ``indices``; for a series, the series up to the end of the first one's
        history."""
        if self.series is not None and self.raw is not None:
            end = int(indices[0]) + self.series.window
            return self.raw.iloc[end - self.series.window : end].reset_index(drop=True)
        rows = self.raw_rows(indices)
        assert not isinstance(rows, np.ndarray)
        return rows

    @property
    def num_outputs(self) -> int:
        if self.task == "forecast":
            return int(np.prod(self.labels.shape[1:]))
        return len(self.classes) if self.task == "classification" else 1


@dataclass(frozen=True)
class Split:
    """Index arrays into a Dataset: test T, validation V, red R, blue B (train = R ∪ B)."""

    test: np.ndarray
    val: np.ndarray
    red: np.ndarray
    blue: np.ndarray

    @property
    def train(self) -> np.ndarray:
        return np.sort(np.concatenate([self.red, self.blue]))

    def fingerprint(self) -> str:
        """A hash of every index array, stored in checkpoints to refuse a resume on other data."""
        digest = hashlib.sha256()
        for part in (self.test, self.val, self.red, self.blue):
            digest.update(np.ascontiguousarray(part, dtype=np.int64).tobytes())
            digest.update(b"|")
        return digest.hexdigest()[:16]


def read_table(source: str) -> pd.DataFrame:
    """Read a bundled data set by name, or a .csv/.parquet file by path."""
    import pandas as pd

    if source == "digits_rows":
        from trainers.sequences import digits_rows

        return digits_rows()
    if source == "co2":
        from trainers.series import co2_monthly

        return co2_monthly()
    if source == "penguins":  # palmerpenguins ships the CSV: 344 rows, strings and gaps
        from importlib import metadata

        # Located, not imported: the package's __init__ needs pkg_resources.
        csv = metadata.distribution("palmerpenguins").locate_file(
            "palmerpenguins/data/penguins.csv"
        )
        return pd.read_csv(str(csv))
    if source in SKLEARN:
        from sklearn import datasets

        return getattr(datasets, f"load_{source}")(as_frame=True).frame
    path = Path(source).expanduser()
    if path.suffix.lower() not in {".csv", ".parquet"}:
        raise DataError(
            f"data.source {source!r} is neither a bundled data set ({', '.join(BUNDLED)}) "
            "nor a .csv or .parquet file"
        )
    if not path.is_file():
        raise DataError(f"data file not found: {path.resolve()}")
    try:
        return pd.read_csv(path) if path.suffix.lower() == ".csv" else pd.read_parquet(path)
    except Exception as exc:  # any parser error is a property of the user's file
        raise DataError(f"cannot read data file {path}: {exc}") from exc


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


def prepare_table(frame: pd.DataFrame, cfg: DataConfig) -> Table:
    """Validate a table's columns and labels; every problem raises one clear DataError."""

    label = cfg.label or BUNDLED_LABELS.get(cfg.source)
    if label is None:
        raise DataError(f"data.label must name the label column of {cfg.source}")
    columns = [str(c) for c in frame.columns]
    frame = frame.set_axis(columns, axis=1)
    named = {"label": [label], "drop": cfg.drop, "features": list(cfg.features)}
    for key, names in named.items():
        unknown = [name for name in names if name not in columns]
        if unknown:
            what = "label column" if key == "label" else f"data.{key} names column(s)"
            raise DataError(
                f"{what} {', '.join(map(repr, unknown))} not found in {cfg.source}; columns are: "
                + ", ".join(columns)
            )
    clash = sorted(set(cfg.features) & ({label} | set(cfg.drop)))
    if clash:
        raise DataError(f"data.features names {clash}, which is the label or dropped")
    labels = frame[label]
    has_label = labels.notna().to_numpy()
    feature_frame = frame.drop(columns=[label, *cfg.drop])
    if feature_frame.shape[1] == 0:
        raise DataError(f"{cfg.source} has no feature columns besides the label {label!r}")
    _check_declared_types(feature_frame, cfg)
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
    )


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


def _check_declared_types(frame: pd.DataFrame, cfg: DataConfig) -> None:
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
    )


def load_table(cfg: DataConfig) -> Table:
    """Read and validate the configured data."""
    return prepare_table(read_table(cfg.source), cfg)


def load_dataset(cfg: DataConfig) -> Dataset:
    """Read, validate and encode the configured data, the preprocessing fitted on all of it (a
    training run fits on P' only: ``plan_run``)."""
    table = load_table(cfg)
    return encode(table, np.arange(len(table.labels)))


def _split_off(
    indices: np.ndarray, labels: np.ndarray, fraction: float, seed: int, stratify: bool, what: str
) -> tuple[np.ndarray, np.ndarray]:
    """Split ``indices`` into (rest, part) with ``fraction`` in part; sorted for stable hashing."""
    from sklearn.model_selection import train_test_split

    try:
        rest, part = train_test_split(
            indices,
            test_size=fraction,
            random_state=seed,
            stratify=labels[indices] if stratify else None,
        )
    except ValueError as exc:
        raise DataError(
            f"data set too small for the split: cannot take {what} ({fraction:g} of "
            f"{len(indices)} samples): {exc}"
        ) from exc
    return np.sort(rest), np.sort(part)


def make_split(
    dataset: Dataset | Table,
    *,
    test_fraction: float,
    val_fraction: float,
    red_ratio: float,
    seed: int,
    num_workers: int,
) -> Split:
    """Split into T, V, R, B as red-blue.md defines; each part must hold one sample per worker."""
    stratify = dataset.task == "classification"
    all_indices = np.arange(len(dataset.labels))
    pool, test = _split_off(
        all_indices, dataset.labels, test_fraction, seed, stratify, "the test part"
    )
    train, val = _split_off(pool, dataset.labels, val_fraction, seed + 1, stratify, "validation")
    blue, red = _split_off(train, dataset.labels, red_ratio, seed + 2, stratify, "the red part")
    split = Split(test=test, val=val, red=red, blue=blue)
    check_parts(split, num_workers, len(all_indices))
    return split


def check_parts(split: Split, num_workers: int, size: int) -> None:
    """Each part must hold one sample per worker."""
    parts = (("test", split.test), ("validation", split.val), ("red", split.red))
    for name, part in (*parts, ("blue", split.blue)):
        if len(part) < num_workers:
            raise DataError(
                f"data set too small for the split: the {name} part has {len(part)} sample(s) "
                f"but there are {num_workers} workers (data has {size} samples)"
            )


def subsample_training(
    split: Split, labels: np.ndarray, fraction: float, seed: int, stratify: bool
) -> Split:
    """Keep ``fraction`` of red and of blue (``data.train_fraction``); T and V are untouched."""
    if fraction >= 1.0:
        return split
    kept = {}
    for name, part in (("red", split.red), ("blue", split.blue)):
        what = f"{fraction:g} of the {name} part"
        _, kept[name] = _split_off(part, labels, fraction, seed + 3, stratify, what)
    return Split(test=split.test, val=split.val, red=kept["red"], blue=kept["blue"])


def with_label_noise(dataset: Dataset, indices: np.ndarray, fraction: float, seed: int) -> Dataset:
    """``dataset`` with ``fraction`` of the labels at ``indices`` replaced (``data.label_noise``):
    classification labels by another class, drawn uniformly; regression labels by the value of
    another of ``indices``. Every other label is untouched."""
    count = round(fraction * len(indices))
    if count == 0:
        return dataset
    rng = np.random.default_rng([seed, 4])
    chosen = rng.choice(indices, size=count, replace=False)
    labels = dataset.labels.copy()
    if dataset.task == "classification":
        num_classes = len(dataset.classes)
        if num_classes < 2:
            raise DataError("data.label_noise needs at least two classes")
        shift = rng.integers(1, num_classes, size=count)
        labels[chosen] = (labels[chosen] + shift) % num_classes
    else:
        labels[chosen] = dataset.labels[rng.choice(indices, size=count)]
    return replace(dataset, labels=labels)
