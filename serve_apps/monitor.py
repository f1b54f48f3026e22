"""Watching a served model: Ray metrics per deployment, and input drift against training.

Metrics go through ``ray.serve.metrics``, which tags them with the application, deployment and
replica, so they reach Ray's Prometheus endpoint and dashboards (names prefixed ``redblue_``):

    redblue_requests_total{status}        requests answered, by HTTP status
    redblue_request_latency_ms            histogram of the time to answer a request
    redblue_rows_total{version}           rows predicted, by the model version that answered
    redblue_batch_rows                    histogram of rows per forward pass
    redblue_predictions_total{label,version}  predicted classes (classification)
    redblue_prediction_mean               mean prediction of the latest request (regression,
                                          forecasts)
    redblue_prediction_distance           histogram of |prediction - training mean| / training
                                          std (regression; a forecaster: each forecast value,
                                          against its target column's training mean and std)

Drift: each replica keeps the bins (``trainers.data.drift``) of the last
``serve.monitor_window`` rows it predicted and, on ``GET /v1/monitor``, compares their shares
with the training inputs'.

``version`` is the registry version that answered (``run`` for a model logged by a run only):
beside a canary (``redblue deploy --canary``) each version's rows and classes are counted apart.
"""

from __future__ import annotations

import threading
from collections import Counter

import numpy as np
from ray.serve import metrics

from trainers.data.drift import bin_index, psi, shares

LATENCY_BOUNDARIES_MS = [
    1.0,
    2.0,
    5.0,
    10.0,
    20.0,
    50.0,
    100.0,
    200.0,
    500.0,
    1000.0,
    2000.0,
    5000.0,
]
ROW_BOUNDARIES = [float(2**i) for i in range(11)]
DISTANCE_BOUNDARIES = [0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0]


class ServeMetrics:
    """The deployment's own metrics (created once per replica).

    ``target_scale`` (the training targets' mean and std, regression) scales the prediction
    summary: the size of each prediction's distance from the training mean, in stds. A
    forecaster's predictions are ``[rows, horizon, targets]`` and its scale one mean and std per
    target (arrays, broadcast over the last axis).
    """

    def __init__(
        self, target_scale: tuple[float | np.ndarray, float | np.ndarray] | None = None
    ) -> None:
        self.target_scale = target_scale
        self.requests = metrics.Counter(
            "redblue_requests_total", "Requests answered, by HTTP status.", tag_keys=("status",)
        )
        self.latency = metrics.Histogram(
            "redblue_request_latency_ms",
            "Time to answer a request, in milliseconds.",
            boundaries=LATENCY_BOUNDARIES_MS,
        )
        self.rows = metrics.Counter(
            "redblue_rows_total", "Rows predicted, by model version.", tag_keys=("version",)
        )
        self.batch_rows = metrics.Histogram(
            "redblue_batch_rows",
            "Rows of the forward pass that answered a request (with other requests').",
            boundaries=ROW_BOUNDARIES,
        )
        self.predictions = metrics.Counter(
            "redblue_predictions_total",
            "Predicted classes, by model version.",
            tag_keys=("label", "version"),  # type: ignore[arg-type]  # Ray hints one key
        )
        self.prediction_mean = metrics.Gauge(
            "redblue_prediction_mean", "Mean prediction of the latest request (regression)."
        )
        self.prediction_distance = metrics.Histogram(
            "redblue_prediction_distance",
            "|prediction - training mean| / training std of each prediction (regression).",
            boundaries=DISTANCE_BOUNDARIES,
        )

    def request(self, status: int, latency_ms: float) -> None:
        self.requests.inc(tags={"status": str(status)})
        self.latency.observe(latency_ms)

    def predicted(self, predictions: np.ndarray, batch_rows: int, version: str) -> None:
        """Count a request's predictions (labels, or values for regression and forecasts) by
        the model ``version`` that made them."""
        self.rows.inc(len(predictions), tags={"version": version})
        self.batch_rows.observe(batch_rows)
        if self.target_scale is None:
            # A Counter: a request holds few rows, where np.unique's sort costs more.
            for label, count in Counter(str(p) for p in np.asarray(predictions).ravel()).items():
                self.predictions.inc(count, tags={"label": label, "version": version})
            return
        values = np.asarray(predictions, dtype=np.float64)
        mean, std = (np.asarray(part, dtype=np.float64) for part in self.target_scale)
        self.prediction_mean.set(float(values.mean()))
        distances = np.abs(values - mean) / np.maximum(std, 1e-12)
        for distance in distances.ravel():
            self.prediction_distance.observe(float(distance))


class DriftWindow:
    """The training bins of the last ``size`` rows seen, and their PSI against training."""

    def __init__(self, summary: dict, feature_names: list[str], size: int) -> None:
        self.names = [name for name in feature_names if name in summary]
        self.edges = [summary[name]["edges"] for name in self.names]
        self.trained = [summary[name]["shares"] for name in self.names]
        self.columns = [feature_names.index(name) for name in self.names]
        self.bins = np.zeros((size, len(self.names)), dtype=np.int16)
        self.size, self.filled, self.next = size, 0, 0
        self.lock = threading.Lock()  # rows arrive from request threads

    def observe(self, rows: np.ndarray) -> None:
        """Record the bins of ``rows`` (the newest ``size`` of them, if more)."""
        if not self.names:
            return
        rows = rows[-self.size :]
        binned = np.column_stack(
            [bin_index(rows[:, c], e) for c, e in zip(self.columns, self.edges, strict=True)]
        )
        with self.lock:
            slots = (self.next + np.arange(len(binned))) % self.size
            self.bins[slots] = binned
            self.next = int((self.next + len(binned)) % self.size)
            self.filled = min(self.size, self.filled + len(binned))

    def report(self, threshold: float) -> dict:
        """``{"window": n, "threshold": t, "features": {name: {"psi": x, "drifted": bool}}}``."""
        with self.lock:
            seen = self.bins[: self.filled].copy()
        features = {}
        for i, name in enumerate(self.names):
            value = psi(self.trained[i], shares(seen[:, i], len(self.edges[i]) + 1))
            features[name] = {"psi": round(value, 6), "drifted": bool(value > threshold)}
        return {"window": int(len(seen)), "threshold": threshold, "features": features}
