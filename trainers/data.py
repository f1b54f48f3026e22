"""Tabular data: loading, validation and the deterministic red-blue split.

The split follows ``shared/design/red-blue.md``: a held-out test part T, a validation slice V taken
from the pool, and the rest P' split into red R and blue B (stratified for classification).
Everything is a pure function of the data and the seed; the driver computes the split once and
ships it to the workers, and checkpoints store its fingerprint.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from trainers.config import DataConfig

if TYPE_CHECKING:
    import pandas as pd

# pandas and scikit-learn are imported where they are used: workers receive a ready Dataset and
# Split, and skipping those imports shortens every worker's start (about 1 s each).
BUNDLED = ("digits", "breast_cancer", "wine", "diabetes")  # scikit-learn's load_<name>
MAX_CLASSES_FOR_INTEGER_LABELS = 20


class DataError(ValueError):
    """The data cannot be used as configured; the message names the problem."""


@dataclass(frozen=True)
class Dataset:
    """Features and labels ready for training; classification labels are class indices."""

    features: np.ndarray  # float32 [n, d]
    labels: np.ndarray  # int64 [n] (classification) or float32 [n] (regression)
    task: str
    feature_names: list[str]
    classes: list  # original class labels, index = class id; empty for regression

    @property
    def num_outputs(self) -> int:
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
    """Read a bundled scikit-learn data set by name, or a .csv/.parquet file by path."""
    import pandas as pd

    if source in BUNDLED:
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


def prepare(frame: pd.DataFrame, cfg: DataConfig) -> Dataset:
    """Validate a table and turn it into a Dataset; every problem raises one clear DataError."""
    import pandas as pd

    label = cfg.label or ("target" if cfg.source in BUNDLED else None)
    if label is None:
        raise DataError(f"data.label must name the label column of {cfg.source}")
    if label not in frame.columns:
        raise DataError(
            f"label column {label!r} not found in {cfg.source}; columns are: "
            + ", ".join(map(str, frame.columns))
        )
    feature_frame = frame.drop(columns=[label])
    if feature_frame.shape[1] == 0:
        raise DataError(f"{cfg.source} has no feature columns besides the label {label!r}")
    non_numeric = [
        str(c)
        for c in feature_frame.columns
        if not pd.api.types.is_numeric_dtype(feature_frame[c])
        or pd.api.types.is_bool_dtype(feature_frame[c])
    ]
    if non_numeric:
        raise DataError(f"non-numeric feature column(s) in {cfg.source}: {', '.join(non_numeric)}")
    features = feature_frame.to_numpy(dtype=np.float64)
    bad_cells = ~np.isfinite(features)
    if bad_cells.any():
        columns = [
            str(c)
            for c, bad in zip(feature_frame.columns, bad_cells.any(axis=0), strict=True)
            if bad
        ]
        raise DataError(
            f"NaN or infinite values in {cfg.source}: {int(bad_cells.sum())} cell(s) in "
            f"column(s) {', '.join(columns)}"
        )
    labels = frame[label]
    if labels.isna().any():
        raise DataError(f"label column {label!r} has {int(labels.isna().sum())} missing value(s)")
    task = cfg.task or _infer_task(labels)
    if task == "classification":
        classes, codes = np.unique(labels.to_numpy(), return_inverse=True)
        if len(classes) < 2:
            raise DataError(f"label column {label!r} has a single class; nothing to learn")
        y = codes.astype(np.int64)
        class_list = [c.item() if hasattr(c, "item") else c for c in classes]
    else:
        if not pd.api.types.is_numeric_dtype(labels):
            raise DataError(f"data.task is regression but label column {label!r} is not numeric")
        y = labels.to_numpy(dtype=np.float64)
        if not np.isfinite(y).all():
            raise DataError(f"label column {label!r} has infinite values")
        y = y.astype(np.float32)
        class_list = []
    return Dataset(
        features=features.astype(np.float32),
        labels=y,
        task=task,
        feature_names=[str(c) for c in feature_frame.columns],
        classes=class_list,
    )


def load_dataset(cfg: DataConfig) -> Dataset:
    """Read and validate the configured data."""
    return prepare(read_table(cfg.source), cfg)


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
    dataset: Dataset,
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


def shard(indices: np.ndarray, rank: int, world_size: int) -> np.ndarray:
    """The slice of a part that one worker trains on."""
    return indices[rank::world_size]


def batch_indices(
    part: np.ndarray, batch_size: int, batch_number: int, stream: Sequence[int]
) -> np.ndarray:
    """The ``batch_number``-th batch of an endless stream of shuffled epochs over ``part``.

    Stateless, so a resumed run continues with exactly the batches it would have seen: epoch e is
    a permutation seeded by (*stream, e); its last batch may be smaller.
    """
    batches_per_epoch = -(-len(part) // batch_size)
    epoch, position = divmod(batch_number, batches_per_epoch)
    order = np.random.default_rng([*stream, epoch]).permutation(len(part))
    return part[order[position * batch_size : (position + 1) * batch_size]]
