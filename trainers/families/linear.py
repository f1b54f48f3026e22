"""Linear models on standardized tabular features: logistic (softmax) regression for
classification, linear regression for regression, with optional L1 / L2 penalties. The baseline
to check first on any table."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from trainers.config import Section
from trainers.families import supervised
from trainers.families.base import Family
from trainers.sections import init_from_field
from trainers.spec import ModelSpec

if TYPE_CHECKING:
    from torch import nn


class LinearConfig(Section):
    """Logistic (softmax) regression for classification, linear regression for regression, on
    standardized features; optional L1 / L2 penalties."""

    kind: Literal["linear"] = Field("linear", description="Model family: linear.")
    l1: float = Field(
        0.0, ge=0.0, description="L1 penalty on the weights (not the biases), added to the loss."
    )
    l2: float = Field(
        0.0, ge=0.0, description="L2 penalty on the weights (not the biases), added to the loss."
    )

    init_from: str | None = init_from_field()


def build(spec: ModelSpec) -> nn.Module:
    """One linear layer from the standardized features to the logits (or the target)."""
    from torch import nn

    from trainers.families.tabular_net import Standardized, input_width

    cfg = LinearConfig.model_validate(spec.options)
    net = nn.Sequential(nn.Linear(input_width(spec), spec.out_features))
    return Standardized.for_spec(spec, net, l1=cfg.l1, l2=cfg.l2)


FAMILY = Family(
    kind="linear",
    config=LinearConfig,
    build=build,
    fit=supervised.fit,
    objective=supervised.objective,
    predict=supervised.predict,
    export=supervised.EXPORT,
)
