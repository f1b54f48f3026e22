"""The declarations the supervised tabular families (``mlp``, ``linear``) share: fitting,
objective, prediction, input schema and example. torch loads on the first call, not at import
(``trainers.tabular`` holds the torch code)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from trainers.inputs import TabularInput
from trainers.preprocessing import Preprocessing
from trainers.spec import ModelSpec

if TYPE_CHECKING:
    from torch import nn

    from trainers.families.base import Objective


def fit(model: nn.Module, features: np.ndarray, targets: np.ndarray | None) -> None:
    from trainers import tabular

    tabular.fit(model, features, targets)


def objective(
    spec: ModelSpec, model: nn.Module, class_weights: Sequence[float] | None = None
) -> Objective:
    from trainers.tabular import Supervised

    return Supervised.for_model(spec, model, class_weights)


def predict(
    model: nn.Module, spec: ModelSpec, features: np.ndarray
) -> tuple[np.ndarray, np.ndarray | None]:
    from trainers import tabular

    return tabular.predict(model, spec, features)


def preprocessing(spec: ModelSpec) -> Preprocessing:
    """The model's fitted preprocessing; number columns as they are for models without one."""
    if spec.preprocessing:
        return Preprocessing.from_dict(spec.preprocessing)
    return Preprocessing.numeric(spec.feature_names or [f"f{i}" for i in range(spec.in_features)])


def input_schema(spec: ModelSpec) -> TabularInput:
    return TabularInput(preprocessing(spec))


def example_input(spec: ModelSpec, count: int) -> list[dict[str, Any]]:
    return input_schema(spec).example(spec.input_summary, count)
