"""The checks an exported graph passes before anything is logged or served: its answers against
the torch model's on the same samples (fp32), and its test metric against the original's
(int8)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from torch import nn

from trainers.export.onnx_graph import ExportError, OnnxGraph, to_onnx
from trainers.export.runtime import OnnxModel, Predict
from trainers.models import predict
from trainers.spec import ModelSpec, ScoreRule
from trainers.tasks import task_for

# An fp32 graph's answers may differ from PyTorch's by PARITY_TOLERANCE, and by PARITY_RELATIVE
# of the answer beyond: a value of 5,000 (grams, a generated row's) has float32 steps of 0.0005,
# so no graph holds 1e-4 there; 1e-6 of it is about 8 steps of float32.
PARITY_TOLERANCE = 1e-4
PARITY_RELATIVE = 1e-6
INT8_ACCURACY_POINTS = 0.5  # an int8 graph's accuracy may drop this many points (of 100) ...
INT8_ERROR_RATIO = 0.02  # ... and its error (MSE) grow by this fraction, at most


def as_numbers(labels: np.ndarray, probabilities: np.ndarray | None) -> np.ndarray:
    """What is compared: class probabilities, else the values (forecasts, generated rows)."""
    return np.asarray(probabilities if probabilities is not None else labels, dtype=np.float64)


@dataclass(frozen=True)
class Parity:
    """How far a graph's answers are from PyTorch's, and on what."""

    largest: float  # the largest absolute difference
    ratio: float  # the largest difference over what is allowed where it is (<= 1 passes)
    checked_on: str  # "360 samples", "88 samples, sequence lengths 3, 4, ..."

    @property
    def ok(self) -> bool:
        return self.ratio <= 1.0

    def __str__(self) -> str:
        return (
            f"largest difference {self.largest:.3g} on {self.checked_on} (allowed "
            f"{PARITY_TOLERANCE:g} + {PARITY_RELATIVE:g} x |answer|)"
        )


def parity(model: nn.Module, spec: ModelSpec, graph: Predict, features: np.ndarray) -> Parity:
    """The torch model's answers against the graph's on ``features`` (at two sequence lengths at
    least, for sequences: :func:`at_lengths`)."""
    largest = ratio = 0.0
    lengths: set[int] = set()
    for part in at_lengths(features):
        expected = as_numbers(*predict(model, spec, part))
        got = as_numbers(*graph(part))
        if expected.size:
            gap = np.abs(expected - got)
            largest = max(largest, float(gap.max()))
            allowed = PARITY_TOLERANCE + PARITY_RELATIVE * np.abs(expected)
            ratio = max(ratio, float((gap / allowed).max()))
        lengths |= set(sequence_lengths(part))
    where = f"{len(features)} samples"
    if lengths:
        where += f", sequence lengths {', '.join(map(str, sorted(lengths)))}"
    return Parity(largest, ratio, where)


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
    checked = parity(model, spec, OnnxModel(graph.data, spec).predict, features)
    if not checked.ok:
        raise ExportError(f"the ONNX graph's answers differ from the weights': {checked}")
    return graph.data, describe(graph, spec, quantized="none", parity=checked)


def describe(graph: OnnxGraph, spec: ModelSpec, *, quantized: str, parity: Parity) -> dict:
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
        "parity_max_abs_diff": parity.largest,
        "parity_checked_on": parity.checked_on,
    }
