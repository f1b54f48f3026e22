"""The model inside a Ray Data actor: loaded once from weights + config, then called per batch.

It knows no model: the family turns a batch's raw columns into features (its input schema) and
predicts; the batch comes back with its own columns plus ``prediction`` (and ``proba_<class>``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from orchestrator.predicting.rules import PREDICTION, PROBA_PREFIX
from trainers.tasks import input_schema

if TYPE_CHECKING:
    import pandas as pd

    from serve_apps.model_bundle import ModelBundle


def with_predictions(
    batch: pd.DataFrame,
    labels: np.ndarray,
    probabilities: np.ndarray | None,
    classes: list[Any],
    proba: bool,
) -> pd.DataFrame:
    """``batch``'s columns, then ``prediction``, then ``proba_<class>`` per class if ``proba``."""
    added: dict[str, Any] = {PREDICTION: labels}
    if proba:
        assert probabilities is not None, "--proba is refused for models without probabilities"
        added |= {f"{PROBA_PREFIX}{name}": probabilities[:, i] for i, name in enumerate(classes)}
    return batch.assign(**added)


class BatchPredictor:
    """Ray Data's callable class for ``map_batches``: one model per actor, reused for every
    batch the actor is handed."""

    def __init__(self, bundle: ModelBundle, proba: bool, threads: int) -> None:
        # An actor reserves ``threads`` CPUs; more torch (or ONNX Runtime) threads would fight
        # its neighbours. An exported model runs its graph in ONNX Runtime.
        bundle = bundle.for_runtime("auto")
        model, self.spec = bundle.load()
        self.predict_rows = bundle.predictor(model, threads)
        self.schema = input_schema(self.spec)
        self.proba = proba

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        features = self.schema.rows(batch)  # InputError names a missing column, a NaN ...
        labels, probabilities = self.predict_rows(features)
        return with_predictions(batch, labels, probabilities, self.spec.classes, self.proba)
