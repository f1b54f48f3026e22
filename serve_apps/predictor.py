"""The Ray Serve deployment: each replica holds one model and serves the API of ``serve_apps.api``.

Requests from different clients are merged into one forward pass with ``@serve.batch``, counted
in rows (a 10-row request takes 10 of ``max_batch_size``; a forecaster's request is one row, its
history's window). With ``batch_wait_timeout_s: 0`` a batch takes whatever is already queued and
never waits: a lone request pays no batching delay, and under load the requests that arrive
during one forward pass form the next batch. A generative model's requests are never merged: a
forward pass over other rows could change the last bits of a request's rows, which must be the
same for the same request.

Beside a canary (``redblue deploy --canary``) each replica holds both models: the canary answers
its share of the requests (``serve_apps.traffic``), batched apart from the champion's, and every
answer names the version that made it.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from ray import serve

from serve_apps.api import Prediction, build_api
from serve_apps.audit_log import AuditLog, audit_log_at
from serve_apps.guard import KeyRing
from serve_apps.model_bundle import ModelBundle
from serve_apps.requests import form_for
from serve_apps.settings import ServeSection
from serve_apps.traffic import CANARY, TrafficSplit

DEPLOYMENT_NAME = "Predictor"


def _rows_in(requests: list[np.ndarray]) -> int:
    return sum(len(rows) for rows in requests)


@serve.deployment(name=DEPLOYMENT_NAME)
@serve.ingress()
class ModelServer:
    """One replica: loads the bundle's weights, batches forward passes, answers HTTP."""

    def __init__(
        self,
        bundle: ModelBundle,
        settings: ServeSection,
        key_digests: list[str],
        audit_log: str | None,
        canary: ModelBundle | None = None,
        canary_percent: float = 0.0,
    ) -> None:
        self.bundle = bundle
        self.settings = settings
        # The weights load in torch whatever the runtime: the request's bounds and the monitor's
        # target scale read them. The runtime's threads match the CPUs the replica reserves.
        self.model, self.spec = bundle.load()
        threads = math.ceil(settings.cpus_per_replica)
        self.predict_rows = bundle.predictor(self.model, threads)
        self.canary = canary
        self.split = TrafficSplit(canary_percent if canary else 0.0)
        self.predict_canary = canary.predictor(canary.load()[0], threads) if canary else None
        self.batched = form_for(self.spec).batched
        self.keys = KeyRing(key_digests)
        self.audit = (
            AuditLog(
                audit_log_at(audit_log),
                max_bytes=settings.audit_log_max_bytes,
                backups=settings.audit_log_backups,
                refusal_interval_s=settings.audit_refusal_interval_s,
            )
            if audit_log
            else None
        )
        for batcher in (self._forward_batch, self._canary_batch):
            batched: Any = batcher  # serve.batch adds these setters
            batched.set_max_batch_size(settings.max_batch_size)
            batched.set_batch_wait_timeout_s(settings.batch_wait_timeout_s)

    def __serve_build_asgi_app__(self):
        return build_api(
            self,
            keys=self.keys,
            max_body_bytes=self.settings.max_body_bytes,
            max_rows=self.settings.max_rows,
            audit=self.audit,
            monitor_window=self.settings.monitor_window,
            drift_threshold=self.settings.drift_threshold,
            trusted_proxies=self.settings.trusted_proxies,
        )

    def __del__(self) -> None:
        """Serve calls this when the replica stops: the audit log's pending summaries."""
        audit = getattr(self, "audit", None)
        if audit is not None:
            audit.close()

    async def predict(self, rows: np.ndarray) -> Prediction:
        """Predict ``rows`` with the version whose turn it is, batched with other requests to
        it unless batching is off or it is full (or the model's form asks for a forward pass of
        its own: a generative model's)."""
        if self.split.next() == CANARY and self.canary and self.predict_canary:
            bundle, predict_rows, batched = self.canary, self.predict_canary, self._canary_batch
        else:
            bundle, predict_rows, batched = self.bundle, self.predict_rows, self._forward_batch
        full = len(rows) >= self.settings.max_batch_size
        if not self.batched or self.settings.max_batch_size <= 1 or full:
            labels, probabilities = predict_rows(rows)
            return Prediction(labels, probabilities, len(rows), bundle.reference)
        return await batched(rows)

    @serve.batch(max_batch_size=64, batch_wait_timeout_s=0.0, batch_size_fn=_rows_in)
    async def _forward_batch(self, requests: list[np.ndarray]) -> list[Prediction]:
        return _answers(self.predict_rows, requests, self.bundle)

    @serve.batch(max_batch_size=64, batch_wait_timeout_s=0.0, batch_size_fn=_rows_in)
    async def _canary_batch(self, requests: list[np.ndarray]) -> list[Prediction]:
        assert self.predict_canary is not None and self.canary is not None
        return _answers(self.predict_canary, requests, self.canary)


def _answers(predict_rows, requests: list[np.ndarray], bundle: ModelBundle) -> list[Prediction]:
    """One forward pass over ``requests``. Rows of one model have one shape past the first axis
    (a row, a padded sequence, a window), so the requests stack along it; each answer is its
    slice of the labels."""
    batch = np.concatenate(requests)
    labels, probabilities = predict_rows(batch)
    answers = []
    start = 0
    for rows in requests:
        end = start + len(rows)
        shares = None if probabilities is None else probabilities[start:end]
        answers.append(Prediction(labels[start:end], shares, len(batch), bundle.reference))
        start = end
    return answers
