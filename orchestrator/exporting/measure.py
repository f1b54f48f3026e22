"""What a model costs to keep and to run, measured here in one process, one thread each, so the
figures of a model and of its export compare: file size, p50 latency at batch 1 and 64, rows per
second at batch 64."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from trainers.export.runtime import Predict

BATCHES = (1, 64)
BUDGET_S = 0.5  # time spent per batch size
MAX_CALLS = 400


@dataclass(frozen=True)
class Footprint:
    """One runtime's figures for one model."""

    runtime: str  # "PyTorch fp32", "ONNX Runtime fp32", "ONNX Runtime int8"
    size_bytes: int
    p50_ms: dict[int, float]  # batch size -> median milliseconds a call
    rows_per_s: float  # at the largest batch
    metric: float  # the test metric (the model's score) of this runtime's answers on T

    def as_metrics(self, prefix: str) -> dict[str, float]:
        """MLflow metrics named ``<prefix>_size_bytes``, ``<prefix>_p50_ms_b1`` ..."""
        figures = {f"{prefix}_size_bytes": float(self.size_bytes)}
        figures |= {f"{prefix}_p50_ms_b{b}": ms for b, ms in self.p50_ms.items()}
        return figures | {f"{prefix}_rows_per_s": self.rows_per_s}


def footprint(
    runtime: str, predict: Predict, features: np.ndarray, size_bytes: int, metric: float
) -> Footprint:
    """Time ``predict`` on batches cut from ``features`` (cycled when there are fewer rows)."""
    medians = {}
    for batch in BATCHES:
        rows = np.resize(np.arange(len(features)), max(batch, 1))
        sample = features[rows]
        predict(sample)  # warm up (ONNX Runtime allocates on the first call)
        times: list[float] = []
        start = time.perf_counter()
        while len(times) < MAX_CALLS and (time.perf_counter() - start < BUDGET_S or len(times) < 5):
            began = time.perf_counter()
            predict(sample)
            times.append(time.perf_counter() - began)
        medians[batch] = float(np.median(times) * 1000)
    largest = max(BATCHES)
    return Footprint(runtime, size_bytes, medians, largest / (medians[largest] / 1000), metric)


def measured(
    runtime: str, predict_rows: Predict, size_bytes: int, spec, dataset, split
) -> Footprint:
    """:func:`footprint` of ``predict_rows`` (a model's weights or graph) on the inputs of T,
    with its test metric there (``registry.test_score``)."""
    from orchestrator.registry import test_inputs, test_score

    features, _ = test_inputs(spec, dataset, split)
    metric = test_score(predict_rows, spec, dataset, split)
    return footprint(runtime, predict_rows, features, size_bytes, metric)


def table_rows(footprints: list[Footprint], metric: str) -> list[list[str]]:
    """The trade-off table: one row per runtime, ratios against the first (the original)."""
    base = footprints[0]
    rows = []
    for figure in footprints:
        rows.append(
            [
                figure.runtime,
                f"{figure.size_bytes / 1024:,.1f} KiB",
                f"{figure.p50_ms[1]:.3f}",
                f"{figure.p50_ms[64]:.3f}",
                f"{figure.rows_per_s:,.0f} ({figure.rows_per_s / base.rows_per_s:.2f}x)",
                f"{figure.metric:.4f}",
            ]
        )
    return rows


TABLE_HEADER = ["runtime", "size", "p50 ms b1", "p50 ms b64", "rows/s b64", "{metric}"]
