"""From a raw table to the model's numbers, and back to nothing but JSON.

Each feature column has a type (``number``, ``category`` or ``boolean``; inferred, or set in
``data.features``) and a missing-value rule. :func:`fit` learns what it needs from the training
pool P' only (fill values, categories); the fitted :class:`Preprocessing` is plain data, stored as
JSON in the model's config, and the same :meth:`Preprocessing.transform` turns training data,
pyfunc frames, served records and batch-prediction files into the model's input.

The encoded matrix: first the dense block (a number or boolean column is one column; a category
up to ``max_one_hot`` categories is one column per category, plus one for "missing" when training
had gaps), then one column of integer codes per embedded category (0 unknown, 1 missing, 2 + i the
i-th category), which the model looks up in a learned embedding. A category never seen in
training is "unknown": no one-hot column set, or code 0. Standardization of the dense block is the
model's own (``trainers.families.tabular_net.Standardized``).

No torch here; pandas is imported where used.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from trainers.errors import InputError
from trainers.spec import ModelSpec

if TYPE_CHECKING:
    import pandas as pd

FILLING = ("mean", "median", "constant")  # missing-value rules that answer a missing value
TRUE, FALSE = frozenset({"true", "yes", "1"}), frozenset({"false", "no", "0"})


@dataclass(frozen=True)
class Column:
    """One feature column as fitted on P'."""

    name: str
    type: str  # number, category or boolean
    missing: str = "none"  # number/boolean: none, mean, median, constant or drop; category: own
    fill: float | None = None  # the fitted value for mean, median and constant
    categories: list[str] = field(default_factory=list)  # category: most frequent first
    embedded: bool = False  # category: a learned embedding instead of one-hot
    had_missing: bool = False  # category: a "missing" slot was seen in training

    @property
    def allows_missing(self) -> bool:
        return self.type == "category" or self.missing in FILLING

    @property
    def dense_names(self) -> list[str]:
        """The names of this column's columns in the dense block (none when embedded)."""
        if self.type != "category":
            return [self.name]
        if self.embedded:
            return []
        missing = [f"{self.name}=<missing>"] if self.had_missing else []
        return [f"{self.name}={c}" for c in self.categories] + missing

    @property
    def cardinality(self) -> int:
        """Embedded category: the rows of its embedding (unknown, missing, the categories)."""
        return len(self.categories) + 2

    @property
    def embedding_dim(self) -> int:
        return min(16, round(1.6 * self.cardinality**0.56))

    def describe(self) -> str:
        if self.type == "category":
            how = "embedding" if self.embedded else "one-hot"
            shown = ", ".join(self.categories[:4]) + (", ..." if len(self.categories) > 4 else "")
            return f"{len(self.categories)} categories ({shown}), {how}"
        rule = {"none": "none allowed", "drop": "row dropped"}.get(self.missing, self.missing)
        return f"missing: {rule}" + (f" ({self.fill:.4g})" if self.fill is not None else "")


@dataclass(frozen=True)
class Preprocessing:
    """The fitted transformation of every feature column, in input order."""

    columns: tuple[Column, ...]

    @classmethod
    def numeric(cls, names: list[str]) -> Preprocessing:
        """All-number columns without gaps: what models from before preprocessing took."""
        return cls(tuple(Column(name, "number") for name in names))

    @classmethod
    def from_dict(cls, data: dict) -> Preprocessing:
        return cls(tuple(Column(**column) for column in data["columns"]))

    def to_dict(self) -> dict:
        return {"columns": [asdict(column) for column in self.columns]}

    @property
    def names(self) -> list[str]:
        return [column.name for column in self.columns]

    @property
    def all_numeric(self) -> bool:
        return all(column.type == "number" for column in self.columns)

    @property
    def dense_names(self) -> list[str]:
        return [name for column in self.columns for name in column.dense_names]

    @property
    def embedded(self) -> list[Column]:
        return [column for column in self.columns if column.embedded]

    @property
    def width(self) -> int:
        """Columns of the encoded matrix: the dense block and one code column per embedding."""
        return len(self.dense_names) + len(self.embedded)

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        """The raw ``frame`` (other columns ignored) as the model's float32 matrix; a missing
        column, a wrong type or a refused missing value raises InputError naming the column."""
        absent = [name for name in self.names if name not in frame.columns]
        if absent:
            raise InputError(
                f"missing feature column(s) {absent}; the model takes the {len(self.names)} "
                f"columns {self.names} (in any order; other columns are ignored)"
            )
        dense, codes = [], []
        for column in self.columns:
            values = frame[column.name]
            if column.type == "category":
                keys = [category_key(v) for v in values]
                if column.embedded:
                    codes.append(_codes(keys, column))
                else:
                    dense.append(_one_hot(keys, column))
            else:
                dense.append(_filled(_numbers(values, column), column)[:, None])
        blocks = dense + [c[:, None] for c in codes]
        if not blocks:
            return np.zeros((len(frame), 0), dtype=np.float32)
        return np.concatenate(blocks, axis=1).astype(np.float32)

    def rows_to_drop(self, frame: pd.DataFrame) -> np.ndarray:
        """A mask of the rows a ``missing: drop`` column has a gap in."""
        mask = np.zeros(len(frame), dtype=bool)
        for column in self.columns:
            if column.missing == "drop":
                mask |= frame[column.name].isna().to_numpy()
        return mask


def summary_lines(fitted: Preprocessing, shown: int = 6) -> list[tuple[str, str]]:
    """Columns grouped by how they are read: ("number, missing: mean", "a, b, c"), ..."""
    groups: dict[str, list[str]] = {}
    for column in fitted.columns:
        if column.type == "category":
            how = "category, " + ("embedding" if column.embedded else "one-hot")
            missing = ", missing seen" if column.had_missing else ""
            entry = f"{column.name} ({len(column.categories)}{missing})"
        else:
            how = column.type + ("" if column.missing == "none" else f", missing: {column.missing}")
            entry = column.name
        groups.setdefault(how, []).append(entry)
    return [
        (
            how,
            ", ".join(names[:shown])
            + (f", ... ({len(names)} in all)" if len(names) > shown else ""),
        )
        for how, names in groups.items()
    ]


def is_missing(value: Any) -> bool:
    """None, NaN, or pandas' NA (what a column of Arrow types, as Ray Data reads, holds)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return True
    return type(value).__name__ in ("NAType", "NaTType")


def category_key(value: Any) -> Any:
    """A category value as it is stored: its text (1 and 1.0 alike), or None when missing."""
    if is_missing(value):
        return None
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value)).lower()
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    if isinstance(value, (list, dict, tuple)):
        raise InputError(f"a category value must be a string or a number, not {value!r}")
    return str(value)


def _codes(keys: list, column: Column) -> np.ndarray:
    index = {c: i + 2 for i, c in enumerate(column.categories)}
    return np.array([1 if k is None else index.get(k, 0) for k in keys], dtype=np.float32)


def _one_hot(keys: list, column: Column) -> np.ndarray:
    names = column.categories + ([None] if column.had_missing else [])
    index = {c: i for i, c in enumerate(names)}
    out = np.zeros((len(keys), len(names)), dtype=np.float32)
    for row, key in enumerate(keys):
        position = index.get(key)
        if position is not None:
            out[row, position] = 1.0
    return out


def _numbers(values: pd.Series, column: Column) -> np.ndarray:
    """The column as float64 with NaN for missing; a value of the wrong type is an InputError."""
    import pandas as pd

    if column.type == "boolean":
        return np.array([_boolean(v, column.name) for v in values], dtype=np.float64)
    if pd.api.types.is_bool_dtype(values):
        raise InputError(f"column {column.name!r}: expected numbers, got booleans")
    if pd.api.types.is_numeric_dtype(values):
        numbers = values.to_numpy(dtype=np.float64, na_value=np.nan)
    else:
        numbers = np.full(len(values), np.nan)
        for row, value in enumerate(values):
            if is_missing(value):
                continue
            if isinstance(value, (bool, np.bool_)) or not isinstance(
                value, (int, float, np.integer, np.floating)
            ):
                raise InputError(
                    f"column {column.name!r}: expected a number, got {value!r} (row {row})"
                )
            numbers[row] = float(value)
    if np.isinf(numbers).any():
        raise InputError(f"column {column.name!r}: infinite value(s)")
    return numbers


def _boolean(value: Any, name: str) -> float:
    if is_missing(value):
        return math.nan
    if isinstance(value, (bool, np.bool_)):
        return float(value)
    if isinstance(value, (int, float, np.integer, np.floating)) and value in (0, 1):
        return float(value)
    if isinstance(value, str) and value.strip().lower() in TRUE | FALSE:
        return float(value.strip().lower() in TRUE)
    raise InputError(f"column {name!r}: expected a boolean, got {value!r}")


def _filled(numbers: np.ndarray, column: Column) -> np.ndarray:
    gaps = np.isnan(numbers)
    if not gaps.any():
        return numbers
    if column.fill is None:
        raise InputError(
            f"column {column.name!r}: {int(gaps.sum())} missing value(s); the model was trained "
            "without gaps there (a data.features missing rule allows them)"
        )
    return np.where(gaps, column.fill, numbers)


def infer_type(values: pd.Series, declared: str | None) -> str:
    """The declared type, or: booleans -> boolean, numbers -> number, anything else category."""
    import pandas as pd

    if declared:
        return declared
    if pd.api.types.is_bool_dtype(values):
        return "boolean"
    if pd.api.types.is_numeric_dtype(values):
        return "number"
    present = values.dropna()
    if len(present) and present.map(lambda v: isinstance(v, (bool, np.bool_))).all():
        return "boolean"  # an object column of True/False with gaps
    return "category"


def category_column(
    name: str, counts: Mapping[str, int], had_missing: bool, max_one_hot: int
) -> Column:
    """A category column from its values' counts over P': most frequent first (ties by name),
    a learned embedding above ``max_one_hot`` categories."""
    ordered = sorted(counts, key=lambda c: (-counts[c], c))
    return Column(
        name,
        "category",
        missing="category",
        categories=list(ordered),
        embedded=len(ordered) > max_one_hot,
        had_missing=had_missing,
    )


def fit(
    frame: pd.DataFrame, rules: Mapping[str, Any], max_one_hot: int, has_gaps: Mapping[str, bool]
) -> Preprocessing:
    """Fit every column of ``frame`` (the training pool P' only).

    ``rules`` maps a column to its ``data.features`` entry (type, missing, fill_value; absent
    keys inferred); ``has_gaps`` says whether the whole column has gaps anywhere, which turns on
    the default ``mean`` rule for it.
    """
    import pandas as pd

    columns = []
    for name in frame.columns:
        values = frame[name]
        rule = rules.get(name)
        kind = infer_type(values, getattr(rule, "type", None))
        if kind == "category":
            keys = pd.Series([category_key(v) for v in values], dtype=object)
            counts = keys.dropna().value_counts(sort=False).to_dict()
            columns.append(category_column(name, counts, bool(keys.isna().any()), max_one_hot))
            continue
        probe = Column(name, kind)
        numbers = _numbers(values, probe)
        missing = getattr(rule, "missing", None) or ("mean" if has_gaps.get(name) else "none")
        present = numbers[~np.isnan(numbers)]
        fill = None
        if missing in ("mean", "median"):
            if not len(present):
                raise InputError(f"column {name!r} has no values in the training pool to fill with")
            fill = float(np.mean(present) if missing == "mean" else np.median(present))
        elif missing == "constant":
            fill = float(getattr(rule, "fill_value", 0.0))
        columns.append(Column(name, kind, missing=missing, fill=fill))
    return Preprocessing(tuple(columns))


def of_model(spec: ModelSpec) -> Preprocessing:
    """A model's fitted preprocessing; number columns as they are for models without one."""
    if spec.preprocessing:
        return Preprocessing.from_dict(spec.preprocessing)
    return Preprocessing.numeric(spec.feature_names or [f"f{i}" for i in range(spec.in_features)])
