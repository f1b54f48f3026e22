"""``POST /v1/predict`` of a model of a table: rows of numbers (``inputs``, for models of number
columns) or records of raw values (``records``), read by ``serve_apps.requests.table_rows`` and
published by ``serve_apps.requests.table_openapi``; one prediction per row."""

from __future__ import annotations

from typing import Any

import numpy as np
from torch import nn

from serve_apps.input_bound import safe_input_bound
from serve_apps.requests.base import (
    RequestForm,
    describe_predictions,
    predictions_answer,
    predictions_schema,
)
from serve_apps.requests.table_openapi import request_schema
from serve_apps.requests.table_rows import InputShape, parse_rows
from trainers.data.preprocessing import of_model
from trainers.spec import ModelSpec


def shape(model: nn.Module, spec: ModelSpec, max_rows: int) -> InputShape:
    """Rows of the model's raw columns, each number within what its weights keep finite."""
    fitted = of_model(spec)
    return InputShape(tuple(fitted.names), max_rows, safe_input_bound(model, spec), fitted)


def body(rows: Any, digits: int | None = None) -> dict[str, list]:
    """``inputs`` for rows of numbers (an array), ``records`` for objects."""
    if isinstance(rows, np.ndarray):
        return {"inputs": (rows if digits is None else rows.round(digits)).tolist()}
    return {"records": list(rows)}


def drift_columns(spec: ModelSpec) -> list[str]:
    """Drift is watched on the dense block of the encoded rows (numbers, one-hot columns)."""
    return of_model(spec).dense_names


FORM = RequestForm(
    shape=shape,
    parse=parse_rows,
    request_schema=request_schema,
    response_schema=predictions_schema,
    answer=predictions_answer,
    body=body,
    describe=describe_predictions,
    size=lambda shape: f"up to {shape.max_rows} rows",
    drift_columns=drift_columns,
)
