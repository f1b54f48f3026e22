"""The checks an exported graph passes before anything is logged or served: its answers against
the torch model's on the same samples (fp32), and its test metric against the original's
(int8)."""

from __future__ import annotations

import numpy as np
from torch import nn

from trainers.export.onnx_graph import ExportError, OnnxGraph, to_onnx
from trainers.export.runtime import OnnxModel, Predict
from trainers.models import predict
from trainers.spec import ModelSpec, ScoreRule
from trainers.tasks import task_for

PARITY_TOLERANCE = 1e-4  # largest absolute difference of an fp32 graph's answers
INT8_ACCURACY_POINTS = 0.5  # an int8 graph's accuracy may drop this many points (of 100) ...
INT8_ERROR_RATIO = 0.02  # ... and its error (MSE) grow by this fraction, at most


def as_numbers(labels: np.ndarray, probabilities: np.ndarray | None) -> np.ndarray:
    """What is compared: class probabilities, else the values (forecasts, generated rows)."""
    return np.asarray(probabilities if probabilities is not None else labels, dtype=np.float64)


def largest_difference(
    model: nn.Module, spec: ModelSpec, graph: Predict, features: np.ndarray
) -> float:
    """The largest absolute difference between the torch model's answers and the graph's."""
    expected = as_numbers(*predict(model, spec, features))
    got = as_numbers(*graph(features))
    return float(np.max(np.abs(expected - got))) if expected.size else 0.0


def at_lengths(features: np.ndarray) -> list[np.ndarray]:
    """The samples to compare on: ``features``; for sequences (``[n, steps, width + 1]``, the
    last channel marking real steps) of a single length, also their last half, so that the
    graph's time axis is checked at two lengths at least."""
    if features.ndim != 3 or not len(features):
        return [features]
    lengths = features[..., -1].sum(axis=1).astype(np.int64)
    if len(np.unique(lengths)) > 1 or lengths[0] < 2:
        return [features]
    length = int(lengths[0])
    return [features, features[:, length - length // 2 : length]]


def sequence_lengths(features: np.ndarray) -> list[int]:
    """The distinct sequence lengths among ``features`` (none for rows)."""
    if features.ndim != 3:
        return []
    return sorted({int(n) for n in features[..., -1].sum(axis=1)})


def int8_problem(rule: ScoreRule, original: float, quantized: float) -> str | None:
    """Why an int8 graph's test metric is too far from the original's, or None: accuracy may
    drop :data:`INT8_ACCURACY_POINTS` points, an error grow by :data:`INT8_ERROR_RATIO`."""
    if rule.higher_is_better:
        drop = (original - quantized) * 100
        if drop > INT8_ACCURACY_POINTS:
            return (
                f"int8 {rule.metric} {quantized:.4f} against fp32 {original:.4f}: "
                f"{drop:.2f} points lower (at most {INT8_ACCURACY_POINTS} allowed)"
            )
        return None
    growth = (quantized - original) / original if original > 0 else float(quantized > original)
    if growth > INT8_ERROR_RATIO:
        return (
            f"int8 {rule.metric} {quantized:.6g} against fp32 {original:.6g}: "
            f"{growth:.1%} higher (at most {INT8_ERROR_RATIO:.0%} allowed)"
        )
    return None


def checked_graph(model: nn.Module, spec: ModelSpec, samples: int = 16) -> tuple[bytes, dict]:
    """The model's fp32 graph and its export.json, checked against the weights on ``samples`` of
    its task's example inputs (where no test data is at hand: a deploy with ``serve.runtime:
    onnxruntime`` of a model that was not exported). ExportError when they differ."""
    graph = to_onnx(model, spec)
    task = task_for(spec)
    features = task.input_schema(spec).rows(task.example_input(spec, samples))
    runner = OnnxModel(graph.data, spec).predict
    gap = max(largest_difference(model, spec, runner, part) for part in at_lengths(features))
    if gap > PARITY_TOLERANCE:
        raise ExportError(
            f"the ONNX graph's answers differ from the weights' by {gap:.3g} "
            f"(at most {PARITY_TOLERANCE:g} allowed)"
        )
    return graph.data, describe(graph, spec, quantized="none", parity=gap)


def describe(graph: OnnxGraph, spec: ModelSpec, *, quantized: str, parity: float) -> dict:
    """export.json: what a plain ONNX Runtime user needs beside the graph, and how it was made
    and checked."""
    return {
        "format": "onnx",
        "quantized": quantized,
        "exporter": graph.exporter,
        "opset": graph.opset,
        "exporter_fallback_reason": graph.fallback_reason or None,
        "inputs": {
            name: {"shape": shape, "meaning": graph.meaning.get(name, "")}
            for name, shape in graph.inputs.items()
        },
        "output": {"name": graph.output, "meaning": graph.meaning.get(graph.output, "")},
        "task": spec.task,
        "model_kind": spec.kind,
        "feature_names": list(spec.feature_names),
        "classes": list(spec.classes),
        "preprocessing": spec.preprocessing,
        "parity_max_abs_diff": parity,
    }
