"""What a trained model is, besides its weights: no torch here, so the driver and the serving
API's schemas can describe a model without importing it."""

from __future__ import annotations

from dataclasses import dataclass, field

from trainers.config import ModelConfig


@dataclass
class ModelSpec:
    """Everything needed to rebuild a trained model besides its weights."""

    kind: str
    in_features: int
    out_features: int
    hidden: list[int]
    activation: str
    dropout: float
    task: str
    feature_names: list[str] = field(default_factory=list)
    classes: list = field(default_factory=list)
    # Per-feature bins of the training inputs (trainers.drift.summarize), for drift monitoring.
    input_summary: dict = field(default_factory=dict)

    @classmethod
    def from_config(
        cls,
        cfg: ModelConfig,
        *,
        in_features: int,
        out_features: int,
        task: str,
        feature_names: list[str],
        classes: list,
        input_summary: dict | None = None,
    ) -> ModelSpec:
        return cls(
            kind=cfg.kind,
            in_features=in_features,
            out_features=out_features,
            hidden=list(cfg.hidden),
            activation=cfg.activation,
            dropout=cfg.dropout,
            task=task,
            feature_names=list(feature_names),
            classes=list(classes),
            input_summary=dict(input_summary or {}),
        )
