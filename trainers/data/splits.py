"""The deterministic red-blue split of samples, as ``docs/red-blue.md`` defines it: a
held-out test part T, a validation slice V taken from the pool, and the rest P' split into red R
and blue B (stratified for classification). Everything is a pure function of the labels and the
seed; the driver computes the split once and ships it to the workers, and checkpoints store its
fingerprint. Also the study knobs on P': ``data.train_fraction`` and ``data.label_noise``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Protocol

import numpy as np

from trainers.config import RunSettings
from trainers.data.keyed_split import HashSplit, split_by_hash
from trainers.dataset import Dataset, Split
from trainers.errors import DataError


class Labelled(Protocol):
    """Samples with labels and a task (a ``Dataset``, or a validated table before encoding)."""

    @property
    def labels(self) -> np.ndarray: ...
    @property
    def task(self) -> str: ...


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
    dataset: Labelled,
    *,
    test_fraction: float,
    val_fraction: float,
    red_ratio: float,
    seed: int,
    num_workers: int,
) -> Split:
    """Split into T, V, R, B as docs/red-blue.md defines; each part holds a sample per worker."""
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


def with_label_noise(
    dataset: Dataset,
    indices: np.ndarray,
    fraction: float,
    stream: tuple[int, ...],
    kind: str = "symmetric",
) -> tuple[Dataset, np.ndarray]:
    """``dataset`` with ``fraction`` of the labels at ``indices`` replaced (``data.label_noise``),
    and the indices replaced, sorted. Classification: by another class drawn uniformly
    (``symmetric``), or class k by class k+1 mod K (``pairs``); regression: by the value of
    another of ``indices``. Every other label is untouched; ``stream`` seeds the draw."""
    count = round(fraction * len(indices))
    if count == 0:
        return dataset, np.array([], dtype=np.int64)
    rng = np.random.default_rng(list(stream))
    chosen = rng.choice(indices, size=count, replace=False)
    labels = dataset.labels.copy()
    if dataset.task == "classification":
        num_classes = len(dataset.classes)
        if num_classes < 2:
            raise DataError("data.label_noise needs at least two classes")
        shift = 1 if kind == "pairs" else rng.integers(1, num_classes, size=count)
        labels[chosen] = (labels[chosen] + shift) % num_classes
    elif kind == "pairs":
        raise DataError(
            "data.label_noise_kind pairs needs classification (it makes class k class k+1); "
            f"this data is {dataset.task}"
        )
    else:
        labels[chosen] = dataset.labels[rng.choice(indices, size=count)]
    return replace(dataset, labels=labels), np.sort(chosen)


def add_label_noise(
    dataset: Dataset, split: Split, cfg: RunSettings
) -> tuple[Dataset, np.ndarray | None]:
    """The run's label noise (``data.label_noise`` of ``data.label_noise_kind`` on
    ``data.label_noise_scope``): the dataset and the rows of P' it changed (None without noise).
    V draws its own rows at the same fraction; T stays clean."""
    data = cfg.data
    if data.label_noise <= 0:
        return dataset, None
    kind = data.label_noise_kind
    dataset, noisy = with_label_noise(dataset, split.train, data.label_noise, (cfg.seed, 4), kind)
    if data.label_noise_scope == "pool_and_val":
        dataset, _ = with_label_noise(dataset, split.val, data.label_noise, (cfg.seed, 5), kind)
    return dataset, noisy


def hash_split_of(cfg: RunSettings) -> HashSplit:
    """The config's shares for the split by a row key's hash."""
    return HashSplit(
        test_fraction=cfg.data.test_fraction,
        val_fraction=cfg.strategy.val_fraction,
        red_ratio=cfg.strategy.red_ratio,
        seed=cfg.seed,
    )


SPLIT_ROLES = ("train", "val", "test")


def split_roles(values: Any, column: str, where: str) -> np.ndarray:
    """``data.split_column``'s values as ``train``, ``val`` or ``test`` (case and surrounding
    spaces aside); DataError naming what else it holds."""
    import pandas as pd

    roles = pd.Series(values).astype("string").str.strip().str.lower()
    if roles.isna().any():
        raise DataError(
            f"data.split_column {column!r} is empty on {int(roles.isna().sum())} {where}; each is "
            "train, val or test"
        )
    other = sorted(set(roles) - set(SPLIT_ROLES))
    if other:
        raise DataError(
            f"data.split_column {column!r} holds {', '.join(map(repr, other[:5]))}; its values "
            "must be train, val or test"
        )
    return roles.to_numpy(dtype=object)


def split_by_roles(samples: Labelled, roles: np.ndarray, cfg: RunSettings) -> Split:
    """``data.split_column``'s split: T its test samples, V its val samples (or drawn from its
    train samples by ``strategy.val_fraction`` when none is val), red and blue the rest by
    ``strategy.red_ratio``, stratified by class."""
    column, seed = cfg.data.split_column, cfg.seed
    found = {role: np.flatnonzero(roles == role) for role in SPLIT_ROLES}
    for role in ("train", "test"):
        if len(found[role]) == 0:
            raise DataError(f"data.split_column {column!r} marks nothing {role}")
    stratify = samples.task == "classification"
    train, val = found["train"], found["val"]
    if len(val) == 0:
        train, val = _split_off(
            train, samples.labels, cfg.strategy.val_fraction, seed + 1, stratify, "validation"
        )
    blue, red = _split_off(
        train, samples.labels, cfg.strategy.red_ratio, seed + 2, stratify, "the red part"
    )
    return Split(test=found["test"], val=np.sort(val), red=red, blue=blue)


def split_samples(samples: Labelled, cfg: RunSettings) -> Split:
    """The run's split of independent samples (rows, sequences): T, V, red and blue as
    ``data.split_column`` fixes them or :func:`make_split` draws them, then
    ``data.train_fraction`` of red and blue."""
    row_keys = getattr(samples, "row_keys", None)
    roles = getattr(samples, "split_roles", None)
    if roles is not None:
        split = split_by_roles(samples, roles, cfg)
    elif cfg.data.split == "hash" and row_keys is not None:
        split = split_by_hash(row_keys, hash_split_of(cfg))
    else:
        split = make_split(
            samples,
            test_fraction=cfg.data.test_fraction,
            val_fraction=cfg.strategy.val_fraction,
            red_ratio=cfg.strategy.red_ratio,
            seed=cfg.seed,
            num_workers=cfg.scaling.num_workers,
        )
    stratify = samples.task == "classification"
    split = subsample_training(split, samples.labels, cfg.data.train_fraction, cfg.seed, stratify)
    check_parts(split, cfg.scaling.num_workers, len(samples.labels))
    return split
