"""What a replica is handed: a model's weights and config as plain data, plus where it came from.

The weights travel as the bytes of the safetensors file and are read by safetensors, so a replica
never unpickles a model file. The control plane builds the bundle (from MLflow) and passes it to
each replica.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from trainers.models import CONFIG_FILE, WEIGHTS_FILE, load_model_bytes
from trainers.spec import ModelSpec


@dataclass(frozen=True)
class ModelBundle:
    """A servable model: weights + model config, and its identity in the registry."""

    uri: str
    name: str
    version: str | None
    run_id: str | None
    weights: bytes = field(repr=False)
    model_config: dict
    test_metrics: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_directory(
        cls,
        directory: Path,
        *,
        uri: str,
        name: str,
        version: str | None,
        run_id: str | None,
        test_metrics: dict[str, float] | None = None,
    ) -> ModelBundle:
        """Read ``weights.safetensors`` and ``model_config.json`` from a saved model folder."""
        return cls(
            uri=uri,
            name=name,
            version=version,
            run_id=run_id,
            weights=(directory / WEIGHTS_FILE).read_bytes(),
            model_config=json.loads((directory / CONFIG_FILE).read_text()),
            test_metrics=dict(test_metrics or {}),
        )

    def load(self) -> tuple[nn.Module, ModelSpec]:
        """Build the model and load its weights (eval mode)."""
        return load_model_bytes(self.weights, self.model_config)

    @property
    def spec(self) -> ModelSpec:
        """What the model is, besides its weights (its ``model_config.json``)."""
        return ModelSpec.from_dict(self.model_config)

    @property
    def label(self) -> str:
        """``digits v3`` or ``digits (run 1a2b3c4d)``."""
        if self.version:
            return f"{self.name} v{self.version}"
        return f"{self.name} (run {(self.run_id or '?')[:8]})"
