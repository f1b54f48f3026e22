"""Request and response bodies of the prediction API, and turning a request into a feature matrix.

Pydantic refuses malformed bodies and non-finite numbers; :func:`feature_rows` checks the rest
against the model (feature count, record fields, row limit). Every refusal is an
:class:`InputError` whose message names the problem; the API answers it with 422.
"""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from trainers.spec import ModelSpec

FiniteNumber = Annotated[float, Field(allow_inf_nan=False, strict=False)]


class InputError(ValueError):
    """The request cannot be predicted on; the message says why."""


class PredictRequest(BaseModel):
    """Rows to predict, as feature lists (in the model's feature order) or as named records."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"inputs": [[0.0, 1.5, 3.0]]}]},
    )

    inputs: list[list[FiniteNumber]] | None = Field(
        None, description="Rows as lists of numbers, in the order of the model's feature names."
    )
    records: list[dict[str, FiniteNumber]] | None = Field(
        None, description="Rows as {feature name: value} objects, every feature named once."
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> PredictRequest:
        if (self.inputs is None) == (self.records is None):
            raise ValueError("give exactly one of 'inputs' or 'records'")
        return self


class ModelRef(BaseModel):
    name: str
    version: str | None = Field(None, description="Registry version; null for a runs:/ model.")
    run_id: str | None = None


class PredictResponse(BaseModel):
    predictions: list[Any] = Field(description="One label (classification) or value per row.")
    probabilities: list[list[float]] | None = Field(
        None, description="Per row, the probability of each class (classification only)."
    )
    model: ModelRef


class ModelInfo(BaseModel):
    model: ModelRef
    uri: str = Field(description="The model URI that was deployed.")
    task: str
    feature_names: list[str]
    num_features: int
    classes: list[Any]
    test_metrics: dict[str, float]


class ErrorBody(BaseModel):
    error: str = Field(description="A short code: unauthorized, invalid_input, too_large, ...")
    message: str = Field(description="What was wrong, naming the field or limit.")


def feature_rows(request: PredictRequest, spec: ModelSpec, max_rows: int) -> np.ndarray:
    """The request as a float32 matrix of shape (rows, spec.in_features), or InputError."""
    rows = request.inputs if request.inputs is not None else request.records
    assert rows is not None  # the validator guarantees one of the two
    if not rows:
        raise InputError("no rows: send at least one row")
    if len(rows) > max_rows:
        raise InputError(f"{len(rows)} rows is more than the limit of {max_rows} per request")
    if request.inputs is not None:
        for index, row in enumerate(request.inputs):
            if len(row) != spec.in_features:
                raise InputError(
                    f"inputs[{index}] has {len(row)} features; the model takes {spec.in_features}"
                )
        values: list = request.inputs
    else:
        values = _records_values(request.records or [], spec.feature_names)
    with np.errstate(over="ignore"):
        matrix = np.asarray(values, dtype=np.float32)
    if not np.isfinite(matrix).all():  # finite in JSON, but beyond float32
        bad = int(np.argwhere(~np.isfinite(matrix))[0][0])
        raise InputError(f"row {bad} holds a number too large for float32")
    return matrix


def _records_values(records: list[dict[str, float]], names: list[str]) -> list[list[float]]:
    known = set(names)
    for index, record in enumerate(records):
        unknown = sorted(set(record) - known)
        if unknown:
            raise InputError(f"records[{index}] has unknown fields: {', '.join(unknown)}")
        missing = [name for name in names if name not in record]
        if missing:
            shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
            raise InputError(f"records[{index}] lacks {len(missing)} field(s): {shown}")
    return [[record[name] for name in names] for record in records]
