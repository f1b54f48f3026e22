"""The declarations the supervised tabular families (``mlp``, ``linear``) share: fitting,
objective, prediction, input schema and example. torch loads on the first call, not at import
(``trainers.tabular`` holds the torch code)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from trainers.inputs import TabularInput, typical_rows
from trainers.spec import ModelSpec

if TYPE_CHECKING:
    from torch import nn

    from trainers.families.base import Objective


def fit(model: nn.Module, features: np.ndarray, targets: np.ndarray | None) -> None:
    from trainers import tabular

    tabular.fit(model, features, targets)


def objective(spec: ModelSpec, model: nn.Module) -> Objective:
    from trainers.tabular import Supervised

    return Supervised.for_model(spec, model)


def predict(
    model: nn.Module, spec: ModelSpec, features: np.ndarray
) -> tuple[np.ndarray, np.ndarray | None]:
    from trainers import tabular

    return tabular.predict(model, spec, features)


def input_schema(spec: ModelSpec) -> TabularInput:
    names = spec.feature_names or [f"f{i}" for i in range(spec.in_features)]
    return TabularInput(tuple(names))


def example_input(spec: ModelSpec, count: int) -> np.ndarray:
    return typical_rows(spec.input_summary, list(input_schema(spec).feature_names), count)
