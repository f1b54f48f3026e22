"""``POST /v1/generate`` of a generative model (``model.kind: gan``): ``{"n": 3, "labels":
["Adelie"], "seed": 7}`` in (``labels``: one class for every row, one per row, or left out to
draw them from the training pool's shares; ``seed`` 0 unless given), ``{"columns": [...],
"rows": [[...], ...], "model": {...}}`` out, rows of the source's columns in its own units and
categories, the label last. The same request gives the same rows."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
from torch import nn

from serve_apps.api_models import ModelRef
from serve_apps.json_body import BASE_BYTES, BYTES_PER_VALUE, F32_MAX, InputError, decode_json
from serve_apps.json_body import kind_of as json_kind
from serve_apps.requests.base import RequestForm
from trainers.data.generation_input import MAX_SEED, GenerationInput, plain
from trainers.errors import InputError as RequestError
from trainers.spec import ModelSpec
from trainers.tasks import input_schema

FIELDS = ("n", "labels", "seed")


@dataclass(frozen=True)
class GenerateShape:
    """What one request may ask for: up to ``max_rows`` rows of ``schema``'s classes."""

    schema: GenerationInput
    max_rows: int

    @property
    def width(self) -> int:
        return len(self.schema.preprocessing.names)

    @property
    def body_bytes(self) -> int:
        """A request naming a class for each of ``max_rows`` rows."""
        longest = max((len(str(c)) for c in self.schema.classes), default=1)
        return BASE_BYTES + self.max_rows * (longest + 8) + 3 * BYTES_PER_VALUE

    @property
    def limit(self) -> float:
        return F32_MAX


def shape(model: nn.Module, spec: ModelSpec, max_rows: int) -> GenerateShape:
    schema = input_schema(spec)
    assert isinstance(schema, GenerationInput)
    return GenerateShape(dataclasses.replace(schema, max_rows=max_rows), max_rows)


def parse(body: bytes, shape: GenerateShape) -> np.ndarray:
    """The request's rows as ``[class code, seed, offset]``; 422 naming what is wrong."""
    request = decode_json(body)
    if not isinstance(request, dict):
        raise InputError(f"the body must be an object of {list(FIELDS)}, not {json_kind(request)}")
    unknown = sorted(set(request) - set(FIELDS))
    if unknown:
        raise InputError(f"unknown field(s) {unknown}; a request takes {list(FIELDS)}")
    labels = request.get("labels")
    if labels is not None and not isinstance(labels, list):
        raise InputError(f"labels must be a list of classes, not {json_kind(labels)}")
    if "n" not in request:
        raise InputError("n (how many rows to generate) is required")
    try:
        return shape.schema.requested(request["n"], labels, request.get("seed", 0))
    except RequestError as exc:
        raise InputError(str(exc)) from None


def request_schema(shape: GenerateShape) -> dict:
    classes = [plain(c) for c in shape.schema.classes]
    return {
        "title": "GenerateRequest",
        "type": "object",
        "properties": {
            "n": {
                "type": "integer",
                "minimum": 1,
                "maximum": shape.max_rows,
                "description": "How many rows to generate.",
            },
            "labels": {
                "type": "array",
                "items": {"enum": classes},
                "minItems": 1,
                "maxItems": shape.max_rows,
                "description": "The class of every row (one), or of each row (n); left out: "
                "drawn from the training pool's class shares.",
            },
            "seed": {
                "type": "integer",
                "minimum": 0,
                "maximum": MAX_SEED,
                "description": "The same seed (and request) gives the same rows; default 0.",
            },
        },
        "required": ["n"],
        "additionalProperties": False,
    }


def response_schema(spec: ModelSpec, shape: GenerateShape) -> dict:
    columns = [*shape.schema.preprocessing.names, shape.schema.label]
    return {
        "title": "GenerateResponse",
        "type": "object",
        "properties": {
            "columns": {"type": "array", "items": {"enum": columns}},
            "rows": {
                "type": "array",
                "items": {"type": "array", "minItems": len(columns), "maxItems": len(columns)},
                "minItems": 1,
                "maxItems": shape.max_rows,
                "description": "The generated rows, a value per column (null for a gap).",
            },
            "model": ModelRef.model_json_schema(),
        },
        "required": ["columns", "rows", "model"],
        "additionalProperties": False,
    }


def answer(
    shape: GenerateShape, generated: np.ndarray, probabilities: np.ndarray | None, model: dict
) -> dict:
    frame = shape.schema.answer(generated)
    rows = frame.astype(object).where(frame.notna(), None).to_numpy().tolist()
    return {"columns": list(frame.columns), "rows": _plain_rows(rows), "model": model}


def body(labels: Any, digits: int | None = None) -> dict:
    """``deploy --check``: one row of each of ``labels``."""
    return {"n": len(labels), "labels": [plain(label) for label in labels], "seed": 0}


def describe(answer: dict) -> str:
    rows = answer["rows"]
    shown = "; ".join(str(row[-1]) + ": " + ", ".join(map(_short, row[:4])) for row in rows)
    more = f" (and {len(answer['columns']) - 5} more columns)" if len(answer["columns"]) > 5 else ""
    return f"{len(rows)} row(s): {shown}{more}"


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _plain_rows(rows: list[list]) -> list[list]:
    return [[plain(value) for value in row] for row in rows]


FORM = RequestForm(
    shape=shape,
    parse=parse,
    request_schema=request_schema,
    response_schema=response_schema,
    answer=answer,
    body=body,
    describe=describe,
    size=lambda shape: f"up to {shape.max_rows} generated rows",
    scale=lambda model, spec: None,
    counted=lambda generated: generated[:, -1],
    route="/v1/generate",
    batched=False,
)
