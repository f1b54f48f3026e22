"""The HTTP API: ``POST /v1/predict`` (a generative model's ``POST /v1/generate``),
``GET /v1/model``, ``GET /v1/monitor``, ``GET /healthz`` (OpenAPI at ``/openapi.json`` and
``/docs``).

:func:`build_api` makes the FastAPI app around anything that can predict (a Serve replica, or a
plain in-process model for a bare uvicorn server), so both serve exactly the same API. Every
error is JSON ``{"error": code, "message": text}``: 400 for a body that is not JSON, 401 without a
valid key, 413 for a body over the limit, 422 for input the model cannot take (or a row whose
prediction is not finite), never a 500 for bad input. The OpenAPI document states the deployed
model's exact input: width, record fields, value range, row limit, and its classes. A forecaster
takes one history and answers its forecast: each task's request and answer are its form's
(``serve_apps.requests``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import anyio.to_thread
import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from torch import nn

from serve_apps.api_models import CanaryInfo, DriftReport, ErrorBody, ModelInfo
from serve_apps.audit_log import AuditLog
from serve_apps.guard import Guard, KeyRing
from serve_apps.json_body import BodyError, InputError
from serve_apps.model_bundle import ModelBundle
from serve_apps.monitor import DriftWindow, ServeMetrics
from serve_apps.proxies import LOOPBACK
from serve_apps.requests import form_for
from serve_apps.traffic import TrafficSplit
from trainers.spec import ModelSpec

logger = logging.getLogger(__name__)
INLINE_PARSE_BYTES = 16 * 1024  # larger bodies are parsed in a worker thread, off the event loop


def _error(description: str) -> dict:
    return {"model": ErrorBody, "description": description}


UNAUTHORIZED = _error("No valid API key ('Authorization: Bearer <key>').")
TOO_LARGE = _error("The body is over the limit (max_body_bytes in GET /v1/model).")
PREDICT_ERRORS: dict[int | str, dict] = {
    400: _error("The body is not JSON (malformed, empty, or not UTF-8)."),
    401: UNAUTHORIZED,
    413: TOO_LARGE,
    422: _error(
        "JSON the model cannot take: not exactly one of inputs/records, a wrong row width, "
        "unknown or missing record fields, a value that is not a number or out of range, no "
        "rows or too many; or a row whose prediction is not finite. The message names them."
    ),
}


@dataclass(frozen=True)
class Prediction:
    labels: np.ndarray  # labels, values (regression) or forecasts [horizon, targets], one per row
    probabilities: np.ndarray | None  # per row and class; None for regression
    batch_rows: int  # rows in the forward pass that computed these (with other requests')
    model: dict[str, str | None] | None = None  # the version that answered (a canary's)


class Predictor(Protocol):
    """What the API needs from whoever runs the model."""

    bundle: ModelBundle
    spec: ModelSpec
    model: nn.Module
    canary: ModelBundle | None  # a second version answering a share of the requests
    split: TrafficSplit  # the canary's share, and how many requests each version answered

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
    monitor_window: int = 1000,
    drift_threshold: float = 0.2,
    trusted_proxies: Sequence[str] = LOOPBACK,
) -> FastAPI:
    """The FastAPI app serving ``predictor``, behind the key check, body limit and audit log,
    with the deployment's metrics and input-drift window (``serve_apps.monitor``).

    The body limit is the smaller of ``max_body_bytes`` and what ``max_rows`` rows of this model
    need (:attr:`InputShape.body_bytes`).
    """
    bundle, spec = predictor.bundle, predictor.spec
    form = form_for(spec)  # the task's request: shape, parser, schemas, answer
    shape = form.shape(predictor.model, spec, max_rows)
    parse = form.parse
    metrics = ServeMetrics(
        None if spec.task == "classification" else form.scale(predictor.model, spec)
    )
    watched = form.drift_columns(spec)
    drift = DriftWindow(spec.input_summary if watched else {}, watched, monitor_window)
    classes = np.asarray(spec.classes).tolist()
    request, response = form.request_schema(shape), form.response_schema(spec, shape)
    errors = (
        PREDICT_ERRORS if form.invalid is None else {**PREDICT_ERRORS, 422: _error(form.invalid)}
    )
    model_ref = bundle.reference
    body_limit = min(max_body_bytes, shape.body_bytes)
    size = form.size(shape)
    api = FastAPI(
        title="Redblue model API",
        version="1",
        description=f"Predictions of {bundle.label} ({bundle.uri}): {spec.task}, "
        f"{shape.width} features, {size} a request, bodies up to {body_limit} bytes. Send the "
        "API key as 'Authorization: Bearer <key>' (every route but /healthz).",
    )

    @api.post(
        form.route,
        responses={
            200: {
                "description": "One prediction per row (a forecaster: the history's forecast), "
                "and which model answered.",
                "content": {"application/json": {"schema": response}},
            },
            **errors,
        },
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": request}},
            }
        },
    )
    async def predict(request: Request) -> JSONResponse:
        """Predict a batch of rows (given as `inputs`, `records` or `sequences`), or a
        forecaster's `history`."""
        body = await request.body()
        if len(body) > INLINE_PARSE_BYTES:
            rows = await anyio.to_thread.run_sync(parse, body, shape)
        else:
            rows = parse(body, shape)
        request.state.rows = len(rows)
        prediction = await predictor.predict(rows)
        request.state.batch_rows = prediction.batch_rows
        _check_finite(prediction)
        answered = prediction.model or model_ref
        version = str(answered["version"] or "run")
        request.state.version = answered["version"]  # the audit line's, beside a canary
        metrics.predicted(form.counted(prediction.labels), prediction.batch_rows, version)
        drift.observe(rows)
        return JSONResponse(
            form.answer(shape, prediction.labels, prediction.probabilities, answered)
        )

    @api.get("/v1/model", response_model=ModelInfo, responses={401: UNAUTHORIZED, 413: TOO_LARGE})
    async def model_info() -> ModelInfo:
        """Which model answers, what it takes and how it scored on its test split."""
        return ModelInfo(
            model=model_ref,
            uri=bundle.uri,
            task=spec.task,
            feature_names=spec.feature_names,
            num_features=shape.width,
            classes=classes,
            test_metrics=bundle.test_metrics,
            max_rows=max_rows,
            input_bound=shape.limit,
            max_body_bytes=body_limit,
            canary=canary_info(predictor.canary, predictor.split),
            answered=dict(predictor.split.answered),
        )

    @api.get(
        "/v1/monitor",
        response_model=DriftReport,
        responses={401: UNAUTHORIZED, 413: TOO_LARGE},
    )
    async def monitor() -> DriftReport:
        """Input drift: each feature's population stability index, over the last rows this
        replica predicted, against the training inputs (``drifted`` past the threshold)."""
        return DriftReport(**drift.report(drift_threshold))

    @api.get(
        "/healthz",
        responses={
            200: {
                "description": "The model is loaded; which model, only with a valid key.",
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "properties": {"status": {"const": "ok"}, "model": {"type": "object"}},
                            "required": ["status"],
                        }
                    }
                },
            },
            413: TOO_LARGE,
        },
    )
    async def healthz(request: Request) -> JSONResponse:
        """200 once the model is loaded (no key needed); with a valid key, also which model
        (name, version, run)."""
        if getattr(request.state, "authenticated", False):
            return JSONResponse({"status": "ok", "model": model_ref})
        return JSONResponse({"status": "ok"})

    _add_error_handlers(api)
    _document_security(api)
    api.add_middleware(
        Guard,
        keys=keys,
        max_body_bytes=body_limit,
        audit=audit,
        model={"model": bundle.name, "version": bundle.version},
        on_answer=metrics.request,
        trusted_proxies=trusted_proxies,
    )
    return api


def canary_info(canary: ModelBundle | None, split: TrafficSplit) -> CanaryInfo | None:
    """What ``GET /v1/model`` says of the canary: which model, its share, its test metrics."""
    if canary is None:
        return None
    return CanaryInfo(
        model=canary.reference,
        uri=canary.uri,
        percent=float(split.share * 100),
        test_metrics=canary.test_metrics,
    )


def _check_finite(prediction: Prediction) -> None:
    """InputError naming the rows (histories) whose prediction overflowed (never a NaN in an
    answer); a row's values may have any shape (a forecast is ``[horizon, targets]``)."""
    values = prediction.probabilities
    if values is None:
        values = prediction.labels.astype(np.float64).reshape(len(prediction.labels), -1)
    finite = np.isfinite(values).all(axis=1)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        shown = ", ".join(str(i) for i in bad[:5]) + (" ..." if len(bad) > 5 else "")
        raise InputError(
            f"the model's output is not finite for row(s) {shown}: the values are too far "
            "outside what the model was trained on"
        )


def _document_security(api: FastAPI) -> None:
    """The OpenAPI document, with the bearer key on every operation but /healthz."""

    def openapi() -> dict:
        if api.openapi_schema is None:
            document = get_openapi(
                title=api.title, version=api.version, description=api.description, routes=api.routes
            )
            schemes = document.setdefault("components", {}).setdefault("securitySchemes", {})
            schemes["apiKey"] = {"type": "http", "scheme": "bearer"}
            for path, operations in document["paths"].items():
                if path != "/healthz":
                    for operation in operations.values():
                        operation["security"] = [{"apiKey": []}]
            api.openapi_schema = document
        return api.openapi_schema

    api.openapi = openapi  # type: ignore[method-assign]


def _add_error_handlers(api: FastAPI) -> None:
    @api.exception_handler(BodyError)
    async def body_error(_: Request, exc: BodyError) -> JSONResponse:
        return error_response(400, "invalid_json", str(exc))

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
