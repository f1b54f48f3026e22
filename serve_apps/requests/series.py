"""``POST /v1/predict`` of a forecaster (``data.kind: series``): ``{"history": [[v1, v2, ...],
...]}``, one history of steps of the series' value columns (``data.window`` steps or more, the
last ``data.window`` of which the model reads), answered ``{"forecast": [[...], ...], "targets":
[...], "horizon": H, "model": {...}}``: per target, its next H values. Bounded work as for rows
(``serve_apps.requests.table_rows``): the body's size, then the JSON parser, then a check of every
value, naming up to five problems (422)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from torch import nn

from serve_apps.api_models import ModelRef
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
from serve_apps.requests.base import RequestForm, StepsShape, per_target
from trainers.data.series import SeriesInput
from trainers.errors import InputError as SchemaError
from trainers.families.forecaster import target_scaling
from trainers.spec import ModelSpec

INVALID_HISTORY = (
    "JSON the forecaster cannot take: not exactly one field 'history', fewer steps than "
    "data.window or more than the limit, a step of the wrong width, a value that is not a finite "
    "number; or a forecast that is not finite. The message names them."
)


@dataclass(frozen=True)
class HistoryShape(StepsShape):
    """What one request may hold: one history of ``window`` to ``max_steps`` steps of the
    series' value columns (``max_rows`` bounds the steps beyond the window)."""

    schema: SeriesInput

    @property
    def max_steps(self) -> int:
        """The most steps a history may have."""
        return self.schema.window + self.max_rows

    @property
    def body_bytes(self) -> int:
        step = self.width * BYTES_PER_VALUE + BYTES_PER_ROW
        return BASE_BYTES + self.max_steps * step


def parse_history(body: bytes, shape: HistoryShape) -> np.ndarray:
    """The body as the one window ``[1, window, width + 1]`` the model takes (the history's last
    ``window`` steps), or BodyError (400) / InputError (422)."""
    if not body.strip():
        raise BodyError("the body is empty: send a JSON object with 'history'")
    document = decode_json(body)
    if not isinstance(document, dict):
        raise InputError(
            f"the body must be a JSON object with one field, 'history'; got {kind_of(document)}"
        )
    if set(document) != {"history"}:
        unknown = sorted(set(document) - {"history"})
        named = f"unknown field(s) {', '.join(map(repr, unknown))}" if unknown else "no 'history'"
        raise InputError(f"the body must be a JSON object with one field, 'history': {named}")
    history = document["history"]
    if not isinstance(history, list):
        raise InputError(f"history: a list of steps expected, got {kind_of(history)}")
    window, count = shape.schema.window, len(history)
    if count > shape.max_steps:
        raise InputError(
            f"history has {count} steps, more than the limit of {shape.max_steps} (data.window "
            f"{window} + serve.max_rows {shape.max_rows}); the forecaster reads the last {window}"
        )
    problems: list[str] = []
    if count < window:
        problems.append(
            f"history has {count} step{'' if count == 1 else 's'}; a forecast needs at least "
            f"{window} (data.window)"
        )
    for index, step in enumerate(history):
        if len(problems) >= MAX_PROBLEMS:
            break
        problem = _step_problem(step, shape)
        if problem:
            problems.append(f"history[{index}]{problem}")
    if problems:
        raise InputError("; ".join(problems))
    try:
        return shape.schema.rows(np.asarray(history, dtype=np.float64))
    except SchemaError as exc:  # not expected after the checks above; still a 422, never a 500
        raise InputError(str(exc)) from None


def _step_problem(step: Any, shape: HistoryShape) -> str | None:
    width, names = shape.width, list(shape.feature_names)
    if not isinstance(step, list):
        return f": a step is a list of {width} numbers {names}, got {kind_of(step)}"
    if len(step) != width:
        return f": a step is a list of {width} numbers {names}, got {len(step)} values"
    for column, value in enumerate(step):
        if type(value) not in NUMBER_TYPES:
            return f"[{column}]: expected a number, got {kind_of(value)}"
        if type(value) is float and not math.isfinite(value):  # JSON NaN, Infinity, 1e400
            return f"[{column}]: expected a finite number, got {_json_name(value)}"
        if abs(value) > shape.limit:  # compared exactly: a huge JSON integer is no float
            return f"[{column}]: expected a finite number within ±{shape.limit:.3g}"
    return None


def _json_name(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    return "Infinity" if value > 0 else "-Infinity"


def answer(shape: HistoryShape, values: np.ndarray, _: np.ndarray | None, model: dict) -> dict:
    """The answer to one history: ``values`` ``[1, horizon, targets]`` as one list of horizon
    values per target."""
    schema = shape.schema
    return {
        "forecast": values[0].T.tolist(),
        "targets": list(schema.targets),
        "horizon": schema.horizon,
        "model": model,
    }


def target_scale(model: nn.Module, spec: ModelSpec) -> tuple[np.ndarray, np.ndarray]:
    """The target columns' training mean and std, that the served forecasts' metrics are scaled
    by (``serve_apps.monitor``)."""
    mean, std = target_scaling(model, spec)
    return mean.numpy(), std.numpy()


def history_request_schema(shape: HistoryShape) -> dict:
    """The JSON schema of a valid ``POST /v1/predict`` body for a forecaster."""
    window, names = shape.schema.window, ", ".join(shape.feature_names)
    number = {"type": "number", "minimum": -shape.limit, "maximum": shape.limit}
    step = {
        "type": "array",
        "items": number,
        "minItems": shape.width,
        "maxItems": shape.width,
        "description": f"One step: the values of {names}, in this order.",
    }
    history = {
        "type": "array",
        "items": step,
        "minItems": window,
        "maxItems": shape.max_steps,
        "description": f"One history: {window} to {shape.max_steps} steps in time order, the "
        f"latest last; the forecaster reads the last {window} (data.window).",
    }
    return {
        "title": "ForecastRequest",
        "description": f"One history of steps of {shape.width} finite numbers ({names}); the "
        f"answer is the next {shape.schema.horizon} values of each target.",
        "type": "object",
        "properties": {"history": history},
        "required": ["history"],
        "additionalProperties": False,
        "example": {"history": [[0.0] * shape.width] * window},
    }


def forecast_response_schema(spec: ModelSpec, shape: HistoryShape) -> dict:
    """The JSON schema of a forecaster's ``POST /v1/predict`` answer."""
    schema = shape.schema
    targets, horizon = list(schema.targets), schema.horizon
    values = {
        "type": "array",
        "items": {"type": "number"},
        "minItems": horizon,
        "maxItems": horizon,
    }
    return {
        "title": "ForecastResponse",
        "type": "object",
        "properties": {
            "forecast": {
                "type": "array",
                "items": values,
                "minItems": len(targets),
                "maxItems": len(targets),
                "description": f"Per target, in the order of 'targets', its values 1 to {horizon} "
                "steps after the history's last step, in the target's own units.",
            },
            "targets": {"const": targets, "description": "The forecast columns, in order."},
            "horizon": {"const": horizon, "description": "Steps forecast (data.horizon)."},
            "model": ModelRef.model_json_schema(),
        },
        "required": ["forecast", "targets", "horizon", "model"],
        "additionalProperties": False,
    }


def shape(model: nn.Module, spec: ModelSpec, max_rows: int) -> HistoryShape:
    """One history a request (``max_rows`` bounds its steps beyond the window)."""
    return HistoryShape(SeriesInput.of_model(spec), max_rows)


def body(histories: Any, digits: int | None = None) -> dict[str, list]:
    """The first of ``histories`` (a forecaster takes one a request)."""
    history = histories[0]
    return {"history": history if digits is None else np.round(history, digits).tolist()}


def describe(body: dict) -> str:
    values = dict(zip(body["targets"], body["forecast"], strict=True))
    return f"forecast of the next {body['horizon']} steps: {per_target(values)}"


FORM = RequestForm(
    shape=shape,
    parse=parse_history,
    request_schema=history_request_schema,
    response_schema=forecast_response_schema,
    answer=answer,
    body=body,
    describe=describe,
    size=lambda shape: f"one history of {shape.schema.window} to {shape.max_steps} steps",
    invalid=INVALID_HISTORY,
    scale=target_scale,
    one_per_request=True,
    noun="history",
)
