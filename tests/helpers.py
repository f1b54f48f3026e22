"""Small real models for the serving tests: built and saved by trainers, no training needed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from trainers.drift import summarize
from trainers.models import MLP, ModelSpec, save_model


def saved_model(directory: Path, *, seed: int, features: int = 8, hidden: int = 16) -> Path:
    """A 3-class MLP with random weights (by ``seed``) and fitted input scaling, saved to disk."""
    torch.manual_seed(seed)
    spec = ModelSpec(
        "mlp",
        features,
        3,
        [hidden],
        "relu",
        0.0,
        "classification",
        feature_names=[f"f{i}" for i in range(features)],
        classes=["a", "b", "c"],
    )
    data = np.random.default_rng(seed).normal(2.0, 3.0, size=(256, features)).astype(np.float32)
    spec.input_summary = summarize(data, spec.feature_names)  # what training stores, for drift
    model = MLP(spec)
    model.set_normalization(data, None)
    return save_model(directory, model, spec)


def sample_rows(count: int, features: int = 8, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).normal(2.0, 3.0, size=(count, features)).astype(np.float32)
