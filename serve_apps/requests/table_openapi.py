"""The JSON schemas that the OpenAPI document publishes for the deployed model: a valid
``POST /v1/predict`` body (rows of numbers, or records of raw values with each field's type and
categories). It comes from the same :class:`~serve_apps.requests.table_rows.InputShape` that
checks requests, so the document states exactly what the server accepts."""

from __future__ import annotations

import json
from typing import Any

from serve_apps.requests.table_rows import InputShape
from trainers.data.preprocessing import Column


def number_schema(shape: InputShape) -> dict:
    schema: dict[str, Any] = {"type": "number"}
    schema["minimum"], schema["maximum"] = -shape.limit, shape.limit
    return schema


def field_schema(column: Column, shape: InputShape) -> dict:
    """The JSON schema of one record field: its type, its categories, whether null is taken."""
    if column.type == "category":
        schema: dict[str, Any] = {
            "type": ["string", "number", "boolean", "null"],
            "examples": column.categories[:20],
            "x-categories": column.categories,
            "description": f"A category: one of {json.dumps(column.categories)}; null is the "
            "'missing' category, and any other value is answered as an unknown category.",
        }
        return schema
    schema = {"type": "boolean"} if column.type == "boolean" else number_schema(shape)
    if column.allows_missing:
        schema = {**schema, "type": [schema["type"], "null"]}
        schema["description"] = (
            f"null is filled with the training {column.missing} ({column.fill:g})."
        )
    return schema


def request_schema(shape: InputShape) -> dict:
    """The JSON schema of a valid ``POST /v1/predict`` body for this model."""
    if shape.typed:
        return _typed_request_schema(shape)
    number = number_schema(shape)
    row = {
        "type": "array",
        "items": number,
        "minItems": shape.width,
        "maxItems": shape.width,
        "description": "One row: the features in this order: " + ", ".join(shape.feature_names),
    }
    record = {
        "type": "object",
        "properties": {name: number for name in shape.feature_names},
        "required": list(shape.feature_names),
        "additionalProperties": False,
        "description": "One row: every feature named once.",
    }

    def rows_of(item: dict, description: str) -> dict:
        return {
            "type": "array",
            "items": item,
            "minItems": 1,
            "maxItems": shape.max_rows,
            "description": description,
        }

    inputs = rows_of(row, "Rows as lists of numbers, in the order of the model's feature names.")
    records = rows_of(record, "Rows as {feature name: number} objects.")
    return {
        "title": "PredictRequest",
        "description": f"1 to {shape.max_rows} rows, as 'inputs' or as 'records'. Numbers only "
        f"(no booleans, strings or null), each within [-{shape.limit:g}, {shape.limit:g}].",
        "oneOf": [
            {
                "type": "object",
                "properties": {"inputs": inputs},
                "required": ["inputs"],
                "additionalProperties": False,
            },
            {
                "type": "object",
                "properties": {"records": records},
                "required": ["records"],
                "additionalProperties": False,
            },
        ],
        "example": {"inputs": [[0.0] * shape.width]},
    }


def _typed_request_schema(shape: InputShape) -> dict:
    fitted = shape.preprocessing
    assert fitted is not None
    record = {
        "type": "object",
        "properties": {c.name: field_schema(c, shape) for c in fitted.columns},
        "required": list(shape.feature_names),
        "additionalProperties": False,
        "description": "One row: every column named once, with its raw value.",
    }
    records = {
        "type": "array",
        "items": record,
        "minItems": 1,
        "maxItems": shape.max_rows,
        "description": "Rows as {column: value} objects.",
    }
    example = {c.name: (c.categories[0] if c.categories else 0.0) for c in fitted.columns}
    example |= {c.name: True for c in fitted.columns if c.type == "boolean"}
    return {
        "title": "PredictRequest",
        "description": f"1 to {shape.max_rows} rows as 'records'. Numbers within "
        f"[-{shape.limit:g}, {shape.limit:g}]; categories as strings (or numbers); null where a "
        "field says it is taken.",
        "type": "object",
        "properties": {"records": records},
        "required": ["records"],
        "additionalProperties": False,
        "example": {"records": [example]},
    }
