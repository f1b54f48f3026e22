"""The HTTP API: ``POST /v1/predict``, ``GET /v1/model``, ``GET /healthz`` (OpenAPI at ``/docs``).

:func:`build_api` makes the FastAPI app around anything that can predict (a Serve replica, or a
plain in-process model for a bare uvicorn server), so both serve exactly the same API. Every
error is JSON ``{"error": code, "message": text}``: 401 without a valid key, 413 for an oversized
body, 422 for input the model cannot take, never a 500 for bad input.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from serve_apps.guard import AuditLog, Guard, KeyRing
from serve_apps.model_bundle import ModelBundle
from serve_apps.schemas import (
    ErrorBody,
    InputError,
    ModelInfo,
    PredictRequest,
    PredictResponse,
    feature_rows,
)
from trainers.models import ModelSpec

logger = logging.getLogger(__name__)
ERRORS: dict[int | str, dict] = {
    401: {"model": ErrorBody},
    413: {"model": ErrorBody},
    422: {"model": ErrorBody},
}


@dataclass(frozen=True)
class Prediction:
    labels: np.ndarray  # labels (classification) or values (regression), one per row
    probabilities: np.ndarray | None  # per row and class; None for regression
    batch_rows: int  # rows in the forward pass that computed these (with other requests')


class Predictor(Protocol):
    """What the API needs from whoever runs the model."""

    bundle: ModelBundle
    spec: ModelSpec

    async def predict(self, rows: np.ndarray) -> Prediction:
        """Labels or values for ``rows``, and class probabilities for classification."""
        ...


def build_api(
    predictor: Predictor,
    *,
    keys: KeyRing,
    max_body_bytes: int,
    max_rows: int,
    audit: AuditLog | None,
) -> FastAPI:
    """The FastAPI app serving ``predictor``, behind the key check, body limit and audit log."""
    bundle, spec = predictor.bundle, predictor.spec
    model_ref = {"name": bundle.name, "version": bundle.version, "run_id": bundle.run_id}
    api = FastAPI(
        title="Redblue model API",
        version="1",
        description=f"Predictions of {bundle.label} ({bundle.uri}). Send the API key as "
        "'Authorization: Bearer <key>'.",
    )

    @api.post("/v1/predict", response_model=PredictResponse, responses=ERRORS)
    async def predict(request: Request, body: PredictRequest) -> JSONResponse:
        """Predict a batch of rows (given as `inputs` or as `records`)."""
        rows = feature_rows(body, spec, max_rows)
        request.state.rows = len(rows)
        prediction = await predictor.predict(rows)
        request.state.batch_rows = prediction.batch_rows
        answer = {"predictions": prediction.labels.tolist(), "model": model_ref}
        if prediction.probabilities is not None:
            answer["probabilities"] = prediction.probabilities.tolist()
        return JSONResponse(answer)

    @api.get("/v1/model", response_model=ModelInfo, responses=ERRORS)
    async def model_info() -> ModelInfo:
        """Which model answers, what it takes and how it scored on its test split."""
        return ModelInfo(
            model=model_ref,
            uri=bundle.uri,
            task=spec.task,
            feature_names=spec.feature_names,
            num_features=spec.in_features,
            classes=spec.classes,
            test_metrics=bundle.test_metrics,
        )

    @api.get("/healthz")
    async def healthz() -> dict:
        """200 once the model is loaded (no key needed)."""
        return {"status": "ok", "model": model_ref}

    _add_error_handlers(api)
    api.add_middleware(Guard, keys=keys, max_body_bytes=max_body_bytes, audit=audit)
    return api


def _add_error_handlers(api: FastAPI) -> None:
    @api.exception_handler(InputError)
    async def input_error(_: Request, exc: InputError) -> JSONResponse:
        return error_response(422, "invalid_input", str(exc))

    @api.exception_handler(RequestValidationError)
    async def invalid_body(_: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(422, "invalid_input", describe_validation(exc.errors()))

    @api.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, str(exc.detail), exc.headers)

    @api.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        logger.exception("unexpected error while serving a request")
        return error_response(500, "internal", f"the server failed: {type(exc).__name__}")


def error_response(
    status: int, error: str, message: str, headers: Mapping | None = None
) -> JSONResponse:
    return JSONResponse({"error": error, "message": message}, status, headers=dict(headers or {}))


def describe_validation(errors) -> str:
    """One readable sentence per problem, naming where it is: ``inputs[0][3]: ...``."""
    problems = []
    for error in errors[:5]:
        where = _location(error.get("loc", ()))
        if error["type"] == "json_invalid":
            reason = (error.get("ctx") or {}).get("error", "invalid JSON")
            problems.append(f"malformed JSON: {reason}")
        elif error["type"] == "extra_forbidden":
            problems.append(f"unknown field {where!r}; send 'inputs' or 'records'")
        elif not where and error["type"] in ("missing", "model_attributes_type", "dict_type"):
            problems.append("the body must be a JSON object with 'inputs' or 'records'")
        else:
            message = error["msg"].removeprefix("Value error, ")
            problems.append(f"{where}: {message}" if where else message)
    if len(errors) > 5:
        problems.append(f"... and {len(errors) - 5} more")
    return "; ".join(problems)


def _location(loc) -> str:
    parts = [part for part in loc if part != "body"]
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text
