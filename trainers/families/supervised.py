"""The declarations the supervised tabular families (``mlp``, ``linear``) share: fitting,
objective and prediction. torch loads on the first call, not at import
(``trainers.families.tabular_net`` holds the torch code)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from trainers.families import exported
from trainers.families.base import Export
from trainers.spec import ModelSpec

if TYPE_CHECKING:
    from torch import nn

    from trainers.families.base import Graph, Objective


def fit(model: nn.Module, features: np.ndarray, targets: np.ndarray | None) -> None:
    from trainers.families import tabular_net

    tabular_net.fit(model, features, targets)


def objective(
    spec: ModelSpec, model: nn.Module, class_weights: Sequence[float] | None = None
) -> Objective:
    from trainers.families.tabular_net import Supervised

    return Supervised.for_model(spec, model, class_weights)


def predict(
    model: nn.Module, spec: ModelSpec, features: np.ndarray
) -> tuple[np.ndarray, np.ndarray | None]:
    from trainers.families import tabular_net

    return tabular_net.predict(model, spec, features)


def graph(model: nn.Module, spec: ModelSpec) -> Graph:
    from trainers.families import tabular_net

    return tabular_net.graph(model, spec)


# Encoded rows in, class probabilities or values out.
EXPORT = Export(graph=graph, feeds=exported.whole, answer=exported.probabilities_or_values)
