"""The same API without Ray: one process, one model, no batching.

The baseline that ``benchmarks/serve_bench.py`` measures Serve against, and what the unit tests
call through httpx without starting Ray. Run it with ``uvicorn.run(local_api(...))``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from fastapi import FastAPI

from serve_apps.api import Prediction, build_api
from serve_apps.audit_log import AuditLog
from serve_apps.guard import KeyRing
from serve_apps.model_bundle import ModelBundle
from serve_apps.settings import ServeSection
from serve_apps.traffic import TrafficSplit


class LocalPredictor:
    """Predicts in the calling process, one request at a time."""

    def __init__(self, bundle: ModelBundle, threads: int | None = None) -> None:
        import torch

        self.bundle = bundle
        self.model, self.spec = bundle.load()
        self.predict_rows = bundle.predictor(self.model, threads or torch.get_num_threads())
        self.canary: ModelBundle | None = None  # one model: no canary
        self.split = TrafficSplit(0.0)

    async def predict(self, rows: np.ndarray) -> Prediction:
        self.split.next()
        return Prediction(*self.predict_rows(rows), batch_rows=len(rows))


def local_api(
    bundle: ModelBundle,
    settings: ServeSection,
    key_digests: list[str],
    audit_log: Path | None = None,
) -> FastAPI:
    """The API of a Serve replica, served from this process."""
    return build_api(
        LocalPredictor(bundle.for_runtime(settings.runtime)),
        keys=KeyRing(key_digests),
        max_body_bytes=settings.max_body_bytes,
        max_rows=settings.max_rows,
        audit=AuditLog(audit_log, refusal_interval_s=settings.audit_refusal_interval_s)
        if audit_log
        else None,
        monitor_window=settings.monitor_window,
        drift_threshold=settings.drift_threshold,
        trusted_proxies=settings.trusted_proxies,
    )
