"""Reading the request of a model of a table (``data.kind: table``): rows of numbers (``inputs``)
or raw records (``records``), turned into the model's matrix.

:func:`parse_rows` takes the raw body and does bounded work on it: a byte count of the arrays,
objects and commas refuses a body with more values than ``max_rows`` rows can hold before any
Python object is made; then the standard JSON parser; then strict checks (numbers only, no
booleans or strings, the model's width or record fields, within :attr:`InputShape.bound`) that
stop after :data:`MAX_PROBLEMS` problems. A body that is not JSON is a :class:`BodyError` (400);
JSON the model cannot take is an :class:`InputError` (422). Both messages name the problem.

The same :class:`InputShape` writes the JSON schemas that the OpenAPI document publishes
(:mod:`serve_apps.requests.table_openapi`), so the document states exactly what the server accepts.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

import numpy as np

from serve_apps.json_body import (
    BASE_BYTES,
    BYTES_PER_ROW,
    BYTES_PER_VALUE,
    F32_MAX,
    MAX_PROBLEMS,
    NUMBER_TYPES,
    BodyError,
    InputError,
    Problems,
    decode_json,
    kind_of,
)
from trainers.data.preprocessing import Column, Preprocessing
from trainers.errors import InputError as PreprocessingError


@dataclass(frozen=True)
class InputShape:
    """What one request may hold: rows of the model's features, each number within ``bound``.

    With ``preprocessing`` (``trainers.data.preprocessing``), a record holds each column's raw
    value: a number, a boolean, or a category (a string or any scalar); ``null`` where the column
    allows a missing value. ``inputs`` (rows of numbers) is for models of number columns only.
    """

    feature_names: tuple[str, ...]
    max_rows: int
    bound: float | None  # every value within [-bound, bound]; None: anything finite in float32
    preprocessing: Preprocessing | None = None

    @property
    def typed(self) -> bool:
        """Whether records go through the model's preprocessing (types other than numbers, or
        columns that take a missing value)."""
        fitted = self.preprocessing
        return fitted is not None and any(
            c.type != "number" or c.allows_missing for c in fitted.columns
        )

    @property
    def takes_inputs(self) -> bool:
        return self.preprocessing is None or self.preprocessing.all_numeric

    @property
    def width(self) -> int:
        return len(self.feature_names)

    @property
    def limit(self) -> float:
        return F32_MAX if self.bound is None else self.bound

    @property
    def body_bytes(self) -> int:
        """The largest body a valid request needs: ``max_rows`` rows of records (which also
        name each feature), every value given :data:`BYTES_PER_VALUE` bytes."""
        names = sum(len(json.dumps(name)) + 2 for name in self.feature_names)
        row = names + self.width * BYTES_PER_VALUE + BYTES_PER_ROW
        return BASE_BYTES + self.max_rows * row

    @property
    def _name_chars(self) -> tuple[int, int]:
        text = "".join(self.feature_names)
        return text.count("[") + text.count("{"), text.count(",")

    @property
    def max_containers(self) -> int:
        """Twice the ``[`` and ``{`` bytes a valid request can hold (feature names count)."""
        brackets, _ = self._name_chars
        return 2 * (2 + self.max_rows * (1 + brackets)) + 16

    @property
    def max_commas(self) -> int:
        """Twice the commas a valid request can hold."""
        _, commas = self._name_chars
        return 2 * self.max_rows * (self.width + commas) + 16


def parse_rows(body: bytes, shape: InputShape) -> np.ndarray:
    """The body as a float32 matrix of shape (rows, shape.width), or BodyError / InputError."""
    if not body.strip():
        raise BodyError("the body is empty: send a JSON object with 'inputs' or 'records'")
    containers = body.count(b"[") + body.count(b"{")
    if containers > shape.max_containers or body.count(b",") > shape.max_commas:
        raise InputError(
            f"the body holds more arrays, objects or values than {shape.max_rows} rows of "
            f"{shape.width} numbers can (the limit per request is {shape.max_rows} rows)"
        )
    document = decode_json(body)
    if not isinstance(document, dict):
        raise InputError("the body must be a JSON object with 'inputs' or 'records'")
    unknown = sorted(set(document) - {"inputs", "records"})
    if unknown:
        raise InputError(f"unknown field {unknown[0]!r}; send 'inputs' or 'records'")
    if len(document) != 1:
        raise InputError("give exactly one of 'inputs' or 'records'")
    ((field, rows),) = document.items()
    if field == "inputs" and not shape.takes_inputs:
        raise InputError(
            "this model has category or boolean columns: send 'records', one object per row "
            "naming each column"
        )
    if not isinstance(rows, list):
        raise InputError(f"{field}: must be a list of rows, not {kind_of(rows)}")
    if not rows:
        raise InputError("no rows: send at least one row")
    if len(rows) > shape.max_rows:
        raise InputError(f"{len(rows)} rows is more than the limit of {shape.max_rows} per request")
    problems = Problems()
    try:
        values = (
            _inputs(rows, shape, problems) if field == "inputs" else _records(rows, shape, problems)
        )
        problems.raise_any()
        if field == "records" and shape.typed:
            return _encoded(values, shape, problems)
        return _matrix(values, field, shape, problems)
    except Problems.Full:
        problems.raise_any(stopped=True)
        raise AssertionError("unreachable") from None


def _inputs(rows: list, shape: InputShape, problems: Problems) -> list:
    width = shape.width
    for index, row in enumerate(rows):
        if not isinstance(row, list):
            problems.add(f"inputs[{index}]: must be a list of {width} numbers, not {kind_of(row)}")
        elif len(row) != width:
            problems.add(f"inputs[{index}] has {len(row)} features; the model takes {width}")
        elif not NUMBER_TYPES.issuperset(map(type, row)):
            position = next(i for i, v in enumerate(row) if type(v) not in NUMBER_TYPES)
            problems.add(
                f"inputs[{index}][{position}]: expected a number, got {kind_of(row[position])}"
            )
    return rows


def _records(rows: list, shape: InputShape, problems: Problems) -> list:
    names = shape.feature_names
    known = frozenset(names)
    values = []
    for index, record in enumerate(rows):
        if not isinstance(record, dict):
            problems.add(
                f"records[{index}]: must be an object of feature values, not {kind_of(record)}"
            )
            continue
        if record.keys() != known:
            unknown = [name for name in record if name not in known]
            if unknown:
                shown = ", ".join(unknown[:5]) + (" ..." if len(unknown) > 5 else "")
                problems.add(f"records[{index}] has unknown fields: {shown}")
                continue
            missing = [name for name in names if name not in record]
            shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
            problems.add(f"records[{index}] lacks {len(missing)} field(s): {shown}")
            continue
        row = [record[name] for name in names] if len(names) == 1 else itemgetter(*names)(record)
        if shape.typed:
            values.append(row)
            continue
        if not NUMBER_TYPES.issuperset(map(type, row)):
            name = next(n for n, v in zip(names, row, strict=True) if type(v) not in NUMBER_TYPES)
            problems.add(f"records[{index}].{name}: expected a number, got {kind_of(record[name])}")
            continue
        values.append(row)
    return values


def _matrix(values: list, field: str, shape: InputShape, problems: Problems) -> np.ndarray:
    def where(row: int, column: int) -> str:
        if field == "inputs":
            return f"inputs[{row}][{column}]"
        return f"records[{row}].{shape.feature_names[column]}"

    try:
        matrix = np.array(values, dtype=np.float64)
    except OverflowError:  # an integer beyond float64
        for row_index, row in enumerate(values):
            for column, value in enumerate(row):
                if abs(value) > shape.limit:
                    problems.add(f"{where(row_index, column)}: {_outside(value, shape)}")
        problems.raise_any()
        raise
    finite = np.isfinite(matrix)
    if not finite.all():  # NaN, Infinity, or a number beyond float64 such as 1e999
        for row, column in np.argwhere(~finite)[:MAX_PROBLEMS]:
            problems.add(f"{where(row, column)}: expected a finite number")
    outside = finite & (np.abs(matrix) > shape.limit)
    if outside.any():
        for row, column in np.argwhere(outside)[:MAX_PROBLEMS]:
            problems.add(f"{where(row, column)}: {_outside(matrix[row, column], shape)}")
    problems.raise_any()
    return matrix.astype(np.float32)


def _encoded(values: list, shape: InputShape, problems: Problems) -> np.ndarray:
    """Typed records checked value by value, then encoded by the model's preprocessing."""
    import pandas as pd

    fitted = shape.preprocessing
    assert fitted is not None
    for index, row in enumerate(values):
        for column, value in zip(fitted.columns, row, strict=True):
            problem = _value_problem(column, value, shape)
            if problem:
                problems.add(f"records[{index}].{column.name}: {problem}")
    problems.raise_any()
    frame = pd.DataFrame(values, columns=list(shape.feature_names), dtype=object)
    try:
        return fitted.transform(frame)
    except PreprocessingError as exc:
        raise InputError(str(exc)) from None


def _value_problem(column: Column, value: Any, shape: InputShape) -> str | None:
    if value is None:
        if column.allows_missing:
            return None
        return "null is not allowed: the model was trained without gaps in this column"
    if column.type == "category":
        if type(value) in (dict, list):
            return f"expected a category (a string or a number), got {kind_of(value)}"
        if type(value) is float and not math.isfinite(value):
            return "expected a finite number"
        return None
    if column.type == "boolean":
        return None if type(value) is bool else f"expected a boolean, got {kind_of(value)}"
    if type(value) not in NUMBER_TYPES:
        return f"expected a number, got {kind_of(value)}"
    if not math.isfinite(value):
        return "expected a finite number"
    if abs(value) > shape.limit:
        return _outside(value, shape)
    return None


def _outside(value: float, shape: InputShape) -> str:
    text = f"{float(value):.6g}" if abs(value) < 1e300 else "a number"
    if shape.bound is None:
        return f"{text} is too large for float32"
    return f"{text} is outside the model's input range [-{shape.bound:g}, {shape.bound:g}]"
