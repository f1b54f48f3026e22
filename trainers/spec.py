"""What a trained model is, besides its weights: no torch here, so the driver and the serving
API's schemas can describe a model without importing it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np

# A saved model's files (``trainers.models``); an exported one adds ``trainers.export.runtime``'s.
WEIGHTS_FILE = "weights.safetensors"
CONFIG_FILE = "model_config.json"
FINAL_MODEL_DIR = "final_model"  # the folder of the kept model, in a checkpoint and in MLflow
LABEL_ISSUES_FILE = "label_issues.csv"  # strategy.clean's report, beside the kept model


@dataclass
class ModelSpec:
    """Everything needed to rebuild a trained model besides its weights.

    ``options`` is the family's ``model:`` config section as trained (for the MLP: kind, hidden,
    activation, dropout); the rest describes the data the model was trained on. ``in_features``
    is the width of the encoded matrix (``Preprocessing.width``); ``feature_names`` the raw
    columns.
    """

    kind: str
    task: str
    in_features: int
    out_features: int
    options: dict[str, Any] = field(default_factory=dict)
    feature_names: list[str] = field(default_factory=list)
    classes: list = field(default_factory=list)
    # Per-feature bins of the training inputs (trainers.data.drift.summarize), for drift monitoring.
    input_summary: dict = field(default_factory=dict)
    # The fitted trainers.data.preprocessing.Preprocessing as JSON; empty: numbers as they are.
    preprocessing: dict = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelSpec:
        """Read a ``model_config.json``; files written before families had options held the
        MLP's fields (hidden, activation, dropout) at the top level, and are read the same."""
        known = {f.name for f in fields(cls)} - {"options"}
        options = dict(data.get("options") or {})
        options.update({k: v for k, v in data.items() if k not in known and k != "options"})
        options.setdefault("kind", data["kind"])
        return cls(**{k: v for k, v in data.items() if k in known}, options=options)


@dataclass(frozen=True)
class ScoreRule:
    """The test metric a model is ranked by (the champion rule) and which way is better."""

    metric: str
    higher_is_better: bool

    @classmethod
    def for_task(cls, task: str) -> ScoreRule:
        """Accuracy for classification (higher wins), mean squared error for regression."""
        if task == "classification":
            return cls("test_accuracy", higher_is_better=True)
        return cls("test_mse", higher_is_better=False)

    def score(self, predictions: np.ndarray, truth: np.ndarray) -> float:
        """The metric of predictions (in the data's own terms) against the true values."""
        if self.metric == "test_accuracy":
            return float(np.mean(np.asarray(predictions) == np.asarray(truth)))
        difference = np.asarray(predictions, np.float64) - np.asarray(truth, np.float64)
        return float(np.mean(difference**2))
