"""The multilayer perceptron on standardized tabular features (classification or regression)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field, model_validator

from trainers.config import Section
from trainers.families import supervised
from trainers.families.base import Family
from trainers.sections import init_from_field
from trainers.spec import ModelSpec

if TYPE_CHECKING:
    from torch import nn


class MLPConfig(Section):
    """A multilayer perceptron: linear layers with an activation (and dropout) between them,
    on standardized features."""

    kind: Literal["mlp"] = Field("mlp", description="Model family: mlp.")
    hidden: list[int] = Field(
        default_factory=lambda: [128, 64],
        min_length=1,
        description="Width of each hidden layer of the MLP.",
    )
    activation: Literal["relu", "tanh", "sigmoid", "gelu"] = Field(
        "relu", description="Activation after each hidden layer."
    )
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Dropout after each hidden layer.")
    init_from: str | None = init_from_field()

    @model_validator(mode="after")
    def _positive_widths(self) -> MLPConfig:
        if any(width < 1 for width in self.hidden):
            raise ValueError(f"every hidden width must be >= 1, got {self.hidden}")
        return self


def build(spec: ModelSpec) -> nn.Module:
    """Linear layers of ``hidden`` widths, each followed by the activation (and dropout)."""
    from torch import nn

    from trainers.families.tabular_net import ACTIVATIONS, Standardized, input_width

    cfg = MLPConfig.model_validate(spec.options)
    layers: list[nn.Module] = []
    width = input_width(spec)
    for hidden in cfg.hidden:
        layers += [nn.Linear(width, hidden), ACTIVATIONS[cfg.activation]()]
        if cfg.dropout > 0:
            layers.append(nn.Dropout(cfg.dropout))
        width = hidden
    layers.append(nn.Linear(width, spec.out_features))
    return Standardized.for_spec(spec, nn.Sequential(*layers))


FAMILY = Family(
    kind="mlp",
    config=MLPConfig,
    build=build,
    fit=supervised.fit,
    objective=supervised.objective,
    predict=supervised.predict,
    export=supervised.EXPORT,
    pbt_mutable=("model.dropout",),
)
