"""How a task's model is asked and answers over HTTP: one ``RequestForm`` per task, in
``serve_apps/requests/<data.kind>.py`` beside the task's module in ``trainers/tasks/``.

``build_api`` (``serve_apps.api``) and ``deploy --check`` ask the form of the deployed model's
task; neither knows the kinds. Also here: the answer shared by the forms that predict one label or
value per input (tables, sequences) and its JSON schema.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from torch import nn

from serve_apps.api_models import ModelRef
from serve_apps.json_body import F32_MAX
from trainers.spec import ModelSpec


class Shape(Protocol):
    """What one request may hold (a form's own dataclass): the OpenAPI document and the body
    limit read these."""

    max_rows: int

    @property
    def width(self) -> int: ...
    @property
    def body_bytes(self) -> int: ...
    @property
    def limit(self) -> float: ...


@dataclass(frozen=True)
class StepsShape:
    """What one request of steps may hold: steps of ``schema``'s features (a sequence model's
    ``SequenceInput`` or a forecaster's ``SeriesInput``), each value within ``limit``."""

    schema: Any
    max_rows: int
    limit: float = F32_MAX

    @property
    def feature_names(self) -> tuple[str, ...]:
        return self.schema.feature_names

    @property
    def width(self) -> int:
        return self.schema.width


def target_scale(model: nn.Module, spec: ModelSpec) -> tuple[Any, Any]:
    """The target's training mean and std (regression), that served values' metrics read."""
    return float(model.get_buffer("target_mean")), float(model.get_buffer("target_std"))


def no_drift(spec: ModelSpec) -> list[str]:
    return []


@dataclass(frozen=True)
class RequestForm:
    """One task's ``POST /v1/predict``: the shape of a request, its parser and JSON schemas,
    the answer, and what ``deploy --check`` sends and prints."""

    shape: Callable[[nn.Module, ModelSpec, int], Any]  # (model, spec, max_rows) -> its Shape
    parse: Callable[[bytes, Any], np.ndarray]  # BodyError (400) / InputError (422)
    request_schema: Callable[[Any], dict]
    response_schema: Callable[[ModelSpec, Any], dict]
    # (shape, labels or values, class probabilities or None, model reference) -> the answer
    answer: Callable[[Any, np.ndarray, np.ndarray | None, dict], dict]
    body: Callable[[Any, int | None], dict]  # a user's inputs as a request body (digits: rounded)
    describe: Callable[[dict], str]  # an answer in a line
    size: Callable[[Any], str]  # what one request may hold, in words
    invalid: str | None = None  # the 422 description in the OpenAPI document; None: the default
    drift_columns: Callable[[ModelSpec], list[str]] = no_drift  # columns watched for drift
    scale: Callable[[nn.Module, ModelSpec], tuple[Any, Any] | None] = target_scale
    one_per_request: bool = False  # deploy --check sends the inputs one by one only
    noun: str = "row"
    # What the metrics count as predicted labels (a generative model's: each row's class).
    counted: Callable[[np.ndarray], np.ndarray] = lambda predictions: predictions
    route: str = "/v1/predict"  # a generative model's: /v1/generate
    # Whether requests may share a forward pass (a generative model's rows must not depend on
    # the rows they were computed with, to the last bit).
    batched: bool = True


def per_target(values: dict[str, list[float]]) -> str:
    """``{name: values}`` in a line, each value to three decimals (a forecast, or the values that
    followed a history)."""
    return "; ".join(f"{name} {np.round(steps, 3).tolist()}" for name, steps in values.items())


def predictions_answer(
    shape: Any, labels: np.ndarray, probabilities: np.ndarray | None, model: dict
) -> dict:
    """``{"predictions": [...], "model": {...}}``, with ``probabilities`` for a classifier."""
    answer: dict[str, Any] = {"predictions": labels.tolist(), "model": model}
    if probabilities is not None:
        answer["probabilities"] = probabilities.tolist()
    return answer


def describe_predictions(body: dict) -> str:
    return f"predictions {body['predictions']}"


def predictions_schema(spec: ModelSpec, shape: Shape) -> dict:
    """The JSON schema of a ``POST /v1/predict`` answer of one label or value per input."""
    return response_schema(spec.task, np.asarray(spec.classes).tolist(), shape.max_rows)


def response_schema(task: str, classes: list, max_rows: int) -> dict:
    """The JSON schema of a ``POST /v1/predict`` answer for this model."""
    rows = {"minItems": 1, "maxItems": max_rows}
    properties: dict[str, Any] = {"model": ModelRef.model_json_schema()}
    if task == "classification":
        properties["predictions"] = {
            "type": "array",
            "items": {"enum": list(classes)},
            "description": "One class per row.",
            **rows,
        }
        probabilities = {
            "type": "array",
            "items": {"type": "number", "minimum": 0.0, "maximum": 1.0},
            "minItems": len(classes),
            "maxItems": len(classes),
        }
        properties["probabilities"] = {
            "type": "array",
            "items": probabilities,
            "description": "Per row, the probability of each class, in the order of "
            f"{json.dumps(list(classes))}.",
            **rows,
        }
        required = ["predictions", "probabilities", "model"]
    else:
        properties["predictions"] = {
            "type": "array",
            "items": {"type": "number"},
            "description": "One predicted value per row.",
            **rows,
        }
        required = ["predictions", "model"]
    return {
        "title": "PredictResponse",
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }
