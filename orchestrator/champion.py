"""The registry's champion: register the best trial's model, and promote it only if it wins.

A new version takes the alias ``champion`` only if it beats the current champion on the same test
split (both are scored here, by the same code, on the split of this sweep); otherwise it becomes
``challenger``. :func:`decide` is the whole rule, kept pure for unit tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from trainers.data import Dataset, Split
from trainers.models import load_model, predict

CHAMPION, CHALLENGER = "champion", "challenger"


@dataclass(frozen=True)
class Score:
    """A model's score on a test split: accuracy (higher wins) or mean squared error (lower)."""

    metric: str
    value: float

    @property
    def higher_is_better(self) -> bool:
        return self.metric == "test_accuracy"


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str


def decide(challenger: Score, champion: Score | None) -> Decision:
    """Promote when there is no champion, or when the challenger is strictly better."""
    if champion is None:
        return Decision(True, "there was no champion yet")
    if champion.metric != challenger.metric:
        return Decision(
            True,
            f"the champion was scored by {champion.metric}, this model by {challenger.metric}: "
            "they solve different tasks",
        )
    better = (
        challenger.value > champion.value
        if challenger.higher_is_better
        else challenger.value < champion.value
    )
    comparison = (
        f"{challenger.metric} {challenger.value:.4f} against the champion's {champion.value:.4f} "
        "on the same test split"
    )
    if better:
        return Decision(True, f"it beats the champion: {comparison}")
    return Decision(False, f"it does not beat the champion: {comparison}")


def score_model(final_model_dir: Path, dataset: Dataset, split: Split) -> Score:
    """Score saved weights on the test part T of ``split``."""
    model, spec = load_model(final_model_dir)
    if spec.in_features != dataset.features.shape[1]:
        raise ValueError(
            f"the model takes {spec.in_features} features, the data has {dataset.features.shape[1]}"
        )
    predictions, _ = predict(model, spec, dataset.features[split.test])
    if dataset.task == "classification":
        truth = np.asarray(dataset.classes)[dataset.labels[split.test]]
        return Score("test_accuracy", float(np.mean(predictions == truth)))
    truth = dataset.labels[split.test].astype(np.float64)
    return Score("test_mse", float(np.mean((predictions - truth) ** 2)))
