"""``POST /v1/predict`` of a sequence model (``data.kind: sequence``): ``{"sequences":
[[[f1, f2, ...], ...], ...]}``, each sequence a list of steps of the model's features, lengths
free up to ``data.max_length``. Bounded work as for rows (``serve_apps.requests.table_rows``):
the body's size, then the JSON parser, then a check of every value, naming up to five problems
(422)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from torch import nn

from serve_apps.json_body import (
    BASE_BYTES,
    BYTES_PER_ROW,
    BYTES_PER_VALUE,
    MAX_PROBLEMS,
    NUMBER_TYPES,
    BodyError,
    InputError,
    decode_json,
    kind_of,
)
from serve_apps.requests.base import (
    RequestForm,
    StepsShape,
    describe_predictions,
    predictions_answer,
    predictions_schema,
)
from trainers.data.sequences import SequenceInput, pad
from trainers.spec import ModelSpec


@dataclass(frozen=True)
class SequenceShape(StepsShape):
    """What one request may hold: up to ``max_rows`` sequences of the model's steps."""

    schema: SequenceInput

    @property
    def body_bytes(self) -> int:
        step = self.width * BYTES_PER_VALUE + BYTES_PER_ROW
        return BASE_BYTES + self.max_rows * (self.schema.max_length * step + BYTES_PER_ROW)


def parse_sequences(body: bytes, shape: SequenceShape) -> np.ndarray:
    """The body as the padded array the model takes, or BodyError (400) / InputError (422)."""
    if not body.strip():
        raise BodyError("the body is empty: send a JSON object with 'sequences'")
    document = decode_json(body)
    if not isinstance(document, dict) or set(document) != {"sequences"}:
        raise InputError("the body must be a JSON object with one field, 'sequences'")
    sequences = document["sequences"]
    if not isinstance(sequences, list) or not sequences:
        raise InputError("sequences: a non-empty list of sequences (lists of steps) is expected")
    if len(sequences) > shape.max_rows:
        raise InputError(
            f"{len(sequences)} sequences is more than the limit of {shape.max_rows} per request"
        )
    problems: list[str] = []
    for index, steps in enumerate(sequences):
        problem = _sequence_problem(steps, shape)
        if problem:
            problems.append(f"sequences[{index}]{problem}")
            if len(problems) >= MAX_PROBLEMS:
                break
    if problems:
        raise InputError("; ".join(problems))
    arrays = [np.asarray(steps, dtype=np.float64) for steps in sequences]
    return pad(arrays, shape.schema.max_length)


def _sequence_problem(steps: Any, shape: SequenceShape) -> str | None:
    width, longest = shape.width, shape.schema.max_length
    if not isinstance(steps, list):
        return f": a list of steps expected, got {kind_of(steps)}"
    if not steps:
        return ": empty; a sequence has at least one step"
    if len(steps) > longest:
        return f": {len(steps)} steps; the model takes at most {longest} (data.max_length)"
    for position, step in enumerate(steps):
        if not isinstance(step, list) or len(step) != width:
            return f"[{position}]: a step is a list of {width} numbers {list(shape.feature_names)}"
        for column, value in enumerate(step):
            if type(value) not in NUMBER_TYPES:
                return f"[{position}][{column}]: expected a number, got {kind_of(value)}"
            # abs() first: a huge JSON integer is exact, and too large for math.isfinite
            if abs(value) > shape.limit or not math.isfinite(value):
                return f"[{position}][{column}]: expected a finite number"
    return None


def sequence_request_schema(shape: SequenceShape) -> dict:
    """The JSON schema of a valid ``POST /v1/predict`` body for a sequence model."""
    step = {
        "type": "array",
        "items": {"type": "number"},
        "minItems": shape.width,
        "maxItems": shape.width,
        "description": "One step: the features in this order: " + ", ".join(shape.feature_names),
    }
    sequence = {
        "type": "array",
        "items": step,
        "minItems": 1,
        "maxItems": shape.schema.max_length,
        "description": f"One sequence: 1 to {shape.schema.max_length} steps, in time order.",
    }
    return {
        "title": "PredictRequest",
        "description": f"1 to {shape.max_rows} sequences of steps of {shape.width} finite "
        "numbers; lengths may differ.",
        "type": "object",
        "properties": {
            "sequences": {
                "type": "array",
                "items": sequence,
                "minItems": 1,
                "maxItems": shape.max_rows,
            }
        },
        "required": ["sequences"],
        "additionalProperties": False,
        "example": {"sequences": [[[0.0] * shape.width] * 2]},
    }


def shape(model: nn.Module, spec: ModelSpec, max_rows: int) -> SequenceShape:
    """Sequences of the model's steps: no bound from the weights."""
    return SequenceShape(SequenceInput.of_model(spec), max_rows)


def body(sequences: Any, digits: int | None = None) -> dict[str, list]:
    return {"sequences": list(sequences)}


FORM = RequestForm(
    shape=shape,
    parse=parse_sequences,
    request_schema=sequence_request_schema,
    response_schema=predictions_schema,
    answer=predictions_answer,
    body=body,
    describe=describe_predictions,
    size=lambda shape: f"up to {shape.max_rows} rows",
    noun="sequence",
)
