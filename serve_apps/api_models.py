"""The pydantic models of the API's answers other than predictions: which model answers
(``GET /v1/model``), errors, and input drift (``GET /v1/monitor``); FastAPI publishes them in the
OpenAPI document."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class ModelRef(BaseModel):
    name: str
    version: str | None = Field(None, description="Registry version; null for a runs:/ model.")
    run_id: str | None = None


class ModelInfo(BaseModel):
    model: ModelRef
    uri: str = Field(description="The model URI that was deployed.")
    task: str
    feature_names: list[str]
    num_features: int = Field(description="Input columns (one per feature name).")
    classes: list[Any]
    test_metrics: dict[str, float]
    max_rows: int = Field(description="Most rows one request may carry.")
    input_bound: float = Field(
        description="Every input value must lie within [-input_bound, input_bound]: the range "
        "in which the model's float32 arithmetic is certain to give a finite output."
    )
    max_body_bytes: int = Field(description="Largest request body accepted; larger gets 413.")
    canary: CanaryInfo | None = Field(
        None, description="The version answering a share of the requests (deploy --canary)."
    )
    answered: dict[str, int] = Field(
        default_factory=dict,
        description="Requests this replica answered since it started, by champion and canary.",
    )


class CanaryInfo(BaseModel):
    model: ModelRef
    uri: str = Field(description="The canary's model URI.")
    percent: float = Field(description="Its share of the requests, in percent.")
    test_metrics: dict[str, float]


class ErrorBody(BaseModel):
    error: str = Field(description="A short code: unauthorized, invalid_input, too_large, ...")
    message: str = Field(description="What was wrong, naming the field or limit.")


class FeatureDrift(BaseModel):
    psi: float = Field(description="Population stability index against the training inputs.")
    drifted: bool = Field(description="Whether psi passed the deployment's drift threshold.")


class DriftReport(BaseModel):
    """GET /v1/monitor: input drift over the last rows this replica predicted."""

    window: int = Field(description="Rows compared (up to serve.monitor_window).")
    threshold: float = Field(description="serve.drift_threshold.")
    features: dict[str, FeatureDrift] = Field(
        description="Per feature; empty for a model logged without a training summary."
    )
