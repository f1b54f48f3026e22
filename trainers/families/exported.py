"""The numpy side of running a family's exported graph (``Family.export``): how a model's
features become the graph's inputs, and its outputs the model's answer. No torch here, so an
ONNX Runtime replica or pyfunc model runs without it."""

from __future__ import annotations

import numpy as np

from trainers.families.base import Feed
from trainers.spec import ModelSpec

FEATURES, STEPS, ANSWER = "features", "steps", "answer"


def probabilities_or_values(
    spec: ModelSpec, features: np.ndarray, numbers: np.ndarray
) -> tuple[np.ndarray, np.ndarray | None]:
    """(labels, probabilities) from class probabilities, or (values, None): regression values
    and forecasts in the target's own units."""
    if spec.task == "classification":
        return np.asarray(spec.classes)[numbers.argmax(axis=1)], numbers
    return numbers, None


def whole(spec: ModelSpec, features: np.ndarray) -> list[Feed]:
    """Every row at once, as the graph's ``features`` input."""
    return [Feed(None, {FEATURES: np.ascontiguousarray(features, dtype=np.float32)})]


def by_length(spec: ModelSpec, sequences: np.ndarray) -> list[Feed]:
    """Padded sequences ``[n, steps, width + 1]`` (the last channel marks real steps) as one feed
    per length: each group's real steps only, as the graph's ``steps`` input ``[batch, time,
    width]``. The graph never sees padding, so every direction and layer reads what the packed
    sequences of training read."""
    lengths = np.maximum(sequences[..., -1].sum(axis=1).astype(np.int64), 1)
    feeds = []
    for length in np.unique(lengths):
        rows = np.flatnonzero(lengths == length)
        steps = np.ascontiguousarray(sequences[rows, :length, :-1], dtype=np.float32)
        feeds.append(Feed(rows, {STEPS: steps}))
    return feeds
