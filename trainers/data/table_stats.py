"""What a streamed table's preprocessing is fitted from, without holding the table: mergeable
statistics of batches of raw rows (a Ray Data pass folds them, ``orchestrator.streaming``),
and the same fitted ``Preprocessing``, standardization and classes that the in-memory path
(``trainers.data.tables``) computes from the whole table.

Every batch passes :func:`keyed_rows` (the rows the in-memory path keeps, each with its key's hash
and part); :class:`TableStats` then counts each part's rows and labels, notes gaps over every kept
row (as the in-memory ``has_gaps``), and over the training pool P' only keeps each column's
moments (numbers, booleans), category counts and, for ``missing: median``, its values. A uniform
sample of each part (the rows of smallest sample hash, a bottom-k sketch) travels with it for the
round's monitoring, the drift summary and the logged examples. Pure numpy and pandas: no Ray.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from trainers.config import DataConfig
from trainers.data.keyed_split import BLUE, PART_NAMES, RED, HashSplit, position_keys
from trainers.data.preprocessing import Column, _numbers, category_key
from trainers.errors import DataError, InputError

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

SAMPLE_SALT = np.uint64(0xC2B2AE3D27D4EB4F)
SAMPLE_COLUMN = "__redblue_sample"  # a sampled row's sample hash
MAX_CLASSES = 10_000


@dataclass
class Moments:
    """Count, mean and sum of squared deviations, merged by Chan's formula (stable)."""

    n: int = 0
    mean: float = 0.0
    m2: float = 0.0

    @classmethod
    def of(cls, values: np.ndarray) -> Moments:
        if len(values) == 0:
            return cls()
        mean = float(np.mean(values))
        return cls(len(values), mean, float(np.sum((values - mean) ** 2)))

    def merged(self, other: Moments) -> Moments:
        n = self.n + other.n
        if n == 0:
            return Moments()
        delta = other.mean - self.mean
        mean = self.mean + delta * other.n / n
        return Moments(n, mean, self.m2 + other.m2 + delta * delta * self.n * other.n / n)

    @property
    def std(self) -> float:
        return float(np.sqrt(self.m2 / self.n)) if self.n else 0.0


@dataclass
class ColumnStats:
    """One feature column over P': present values' moments and gaps, or category counts."""

    present: Moments = field(default_factory=Moments)
    missing: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    values: list[np.ndarray] = field(default_factory=list)  # missing: median only

    def merged(self, other: ColumnStats) -> ColumnStats:
        counts = dict(self.counts)
        for key, count in other.counts.items():
            counts[key] = counts.get(key, 0) + count
        return ColumnStats(
            self.present.merged(other.present),
            self.missing + other.missing,
            counts,
            self.values + other.values,
        )


@dataclass(frozen=True)
class KeyedRows:
    """The rows of a batch that the in-memory path keeps, with each one's hash and part."""

    features: pd.DataFrame  # the feature columns
    labels: pd.Series
    hashes: np.ndarray
    parts: np.ndarray
    dropped_labels: int
    dropped_rows: int


@dataclass(frozen=True)
class Layout:
    """How a streamed table's batches are read: its label, feature columns and their types
    (from the source's schema), and the split."""

    data: DataConfig
    label: str
    kinds: dict[str, str]  # feature column -> number, boolean or category
    how: HashSplit
    label_type: str  # integer, float or other (strings, booleans), from the schema

    @property
    def counts_labels(self) -> bool:
        """Whether label values are counted (the classes): not for a number to predict."""
        if self.data.task is not None:
            return self.data.task == "classification"
        return self.label_type != "float"

    @property
    def feature_columns(self) -> list[str]:
        return list(self.kinds)


def keyed_rows(
    batch: pa.RecordBatch,
    layout: Layout,
    path: str,
    offset: int,
    wanted: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
) -> KeyedRows:
    """The rows of ``batch`` (rows ``offset``.. of the file at ``path``) that training keeps (a
    label, no gap in a ``missing: drop`` column), keyed and split; of those, only the ones
    ``wanted(hashes, parts)`` marks when given (chosen before any conversion to pandas, so a
    worker pays for its own rows only). DataError on bad values."""
    from trainers.data.tables import check_declared_types

    cfg = layout.data
    if cfg.row_key:
        keys = batch.column(cfg.row_key).to_numpy(zero_copy_only=False)
    else:
        keys = position_keys(path, np.arange(offset, offset + batch.num_rows))
    has_label = batch.column(layout.label).is_valid().to_numpy(zero_copy_only=False)
    drop = np.zeros(batch.num_rows, dtype=bool)
    for name, rule in cfg.features.items():
        if rule.missing == "drop":
            drop |= batch.column(name).is_null().to_numpy(zero_copy_only=False)
    kept = np.flatnonzero(has_label & ~drop)
    hashes = layout.how.hashes(keys[kept])
    parts = layout.how.parts(hashes)
    if wanted is not None:
        chosen = wanted(hashes, parts)
        kept, hashes, parts = kept[chosen], hashes[chosen], parts[chosen]
    selected = batch.select([*layout.feature_columns, layout.label])
    frame = (selected.take(kept) if len(kept) < batch.num_rows else selected).to_pandas()
    features = frame[layout.feature_columns]
    check_declared_types(features, cfg)
    return KeyedRows(
        features=features,
        labels=frame[layout.label],
        hashes=hashes,
        parts=parts,
        dropped_labels=int((~has_label).sum()),
        dropped_rows=int((has_label & drop).sum()),
    )


@dataclass
class TableStats:
    """Mergeable statistics of a streamed table (module docstring)."""

    rows: list[int] = field(default_factory=lambda: [0, 0, 0, 0])  # per part code
    dropped_labels: int = 0
    dropped_rows: int = 0
    gaps: dict[str, bool] = field(default_factory=dict)
    columns: dict[str, ColumnStats] = field(default_factory=dict)
    # Every kept row's labels, and P''s (None: more than MAX_CLASSES values, or float labels).
    label_counts: dict[Any, int] | None = field(default_factory=dict)
    pool_label_counts: dict[Any, int] | None = field(default_factory=dict)
    pool_labels: Moments = field(default_factory=Moments)  # regression targets over P'
    samples: dict[int, pd.DataFrame] = field(default_factory=dict)  # part code -> rows

    @classmethod
    def of(
        cls,
        rows: KeyedRows,
        layout: Layout,
        sample_rows: int,
        below: dict[int, int] | None = None,
    ) -> TableStats:
        """The batch's statistics; its sample of each part leaves out rows whose sample hash is
        not ``below`` the part's bound (given: they could not enter the sample it is merged
        into, :meth:`folded`)."""
        stats = cls(dropped_labels=rows.dropped_labels, dropped_rows=rows.dropped_rows)
        stats.rows = [int((rows.parts == code).sum()) for code in PART_NAMES]
        gaps = rows.features.isna().any()
        stats.gaps = {name: bool(gaps[name]) for name in layout.kinds}
        pool = np.isin(rows.parts, (RED, BLUE))
        medians = {n for n, rule in layout.data.features.items() if rule.missing == "median"}
        for name, kind in layout.kinds.items():
            column = rows.features[name]
            stats.columns[name] = _column_stats(column, pool, name, kind, name in medians)
        labels = rows.labels
        if layout.counts_labels:
            stats.label_counts = _counts(labels.to_numpy())
            stats.pool_label_counts = _counts(labels.to_numpy()[pool])
        if layout.label_type != "other":
            values = labels.to_numpy(dtype=np.float64)[pool]
            if not np.isfinite(values).all():
                raise DataError(f"label column {layout.label!r} has infinite values")
            stats.pool_labels = Moments.of(values)
        sample_hash = _sample_hashes(rows.hashes)
        for code in PART_NAMES:
            mine = np.flatnonzero(rows.parts == code)
            if below and code in below:
                mine = mine[sample_hash[mine] < below[code]]
            if len(mine) > sample_rows:  # the smallest, then in order
                mine = mine[np.argpartition(sample_hash[mine], sample_rows - 1)[:sample_rows]]
            chosen = mine[np.argsort(sample_hash[mine], kind="stable")]
            frame = rows.features.iloc[chosen].copy()
            frame[layout.label] = rows.labels.iloc[chosen].to_numpy()
            frame[SAMPLE_COLUMN] = sample_hash[chosen]
            stats.samples[code] = frame.reset_index(drop=True)
        return stats

    def merged(self, other: TableStats, sample_rows: int) -> TableStats:
        import pandas as pd

        samples = {}
        for code in PART_NAMES:
            present = [s.samples[code] for s in (self, other) if code in s.samples]
            frames = [frame for frame in present if len(frame)] or present[:1]
            if len(frames) == 1 and len(frames[0]) <= sample_rows:
                samples[code] = frames[0]  # in order already
            elif frames:
                both = pd.concat(frames, ignore_index=True)
                order = np.argsort(both[SAMPLE_COLUMN].to_numpy(), kind="stable")[:sample_rows]
                samples[code] = both.iloc[order].reset_index(drop=True)
        names = set(self.columns) | set(other.columns)
        return TableStats(
            rows=[a + b for a, b in zip(self.rows, other.rows, strict=True)],
            dropped_labels=self.dropped_labels + other.dropped_labels,
            dropped_rows=self.dropped_rows + other.dropped_rows,
            gaps={n: self.gaps.get(n, False) or other.gaps.get(n, False) for n in names},
            columns={
                n: self.columns.get(n, ColumnStats()).merged(other.columns.get(n, ColumnStats()))
                for n in names
            },
            label_counts=_merge_counts(self.label_counts, other.label_counts),
            pool_label_counts=_merge_counts(self.pool_label_counts, other.pool_label_counts),
            pool_labels=self.pool_labels.merged(other.pool_labels),
            samples=samples,
        )

    def folded(self, rows: KeyedRows, layout: Layout, sample_rows: int) -> TableStats:
        """These statistics with a batch's: as ``merged`` with ``of(rows)``, the batch's
        sample drawn only from rows that can enter this one's (a full sample's largest sample
        hash bounds it), so that a file's later batches pass few rows to pandas."""
        bounds = {
            code: int(frame[SAMPLE_COLUMN].iloc[-1])
            for code, frame in self.samples.items()
            if len(frame) >= sample_rows
        }
        return self.merged(TableStats.of(rows, layout, sample_rows, bounds), sample_rows)

    @property
    def sizes(self) -> dict[str, int]:
        return {PART_NAMES[code]: count for code, count in enumerate(self.rows)}


def _column_stats(
    column: pd.Series, pool: np.ndarray, name: str, kind: str, keep_values: bool
) -> ColumnStats:
    """A column's statistics over its ``pool`` rows (the batch's types and finiteness are
    checked already, :func:`keyed_rows`)."""
    if kind == "category":
        keys = [category_key(v) for v in column[pool]]
        present = [k for k in keys if k is not None]
        return ColumnStats(missing=len(keys) - len(present), counts=_counts(np.array(present)))
    if kind == "number" and isinstance(column.dtype, np.dtype) and column.dtype.kind in "fiu":
        numbers = column.to_numpy()[pool].astype(np.float64)  # no Series for the pool's rows
    else:
        try:
            numbers = _numbers(column[pool], Column(name, kind))
        except InputError as exc:
            raise DataError(str(exc)) from None
    present = numbers[~np.isnan(numbers)]
    return ColumnStats(
        present=Moments.of(present),
        missing=int(len(numbers) - len(present)),
        values=[present] if keep_values else [],
    )


def _counts(values: np.ndarray) -> dict[Any, int]:
    if len(values) == 0:
        return {}
    unique, counts = np.unique(values, return_counts=True)
    return {_scalar(u): int(c) for u, c in zip(unique, counts, strict=True)}


def _scalar(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def _merge_counts(a: dict | None, b: dict | None) -> dict | None:
    """Summed counts; None once there are more than MAX_CLASSES values (not classes)."""
    if a is None or b is None:
        return None
    merged = dict(a)
    for key, count in b.items():
        merged[key] = merged.get(key, 0) + count
    return merged if len(merged) <= MAX_CLASSES else None


def _sample_hashes(hashes: np.ndarray) -> np.ndarray:
    from pandas.util import hash_array

    return hash_array(hashes ^ SAMPLE_SALT)
