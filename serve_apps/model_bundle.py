"""What a replica is handed: a model's weights and config as plain data, plus where it came from.

The weights travel as the bytes of the safetensors file and are read by safetensors, so a replica
never unpickles a model file. The control plane builds the bundle (from MLflow) and passes it to
each replica. An exported model (``redblue export``) also carries its ONNX graph, which an ONNX
Runtime replica runs (``serve.runtime``).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from trainers.export.runtime import EXPORT_FILE, ONNX_FILE, Predict
from trainers.models import load_model_bytes
from trainers.spec import CONFIG_FILE, WEIGHTS_FILE, ModelSpec

TORCH, ONNXRUNTIME = "torch", "onnxruntime"


class RuntimeChoiceError(ValueError):
    """The model cannot be served by the runtime asked for."""


class ModelTooLarge(ValueError):
    """The model's config describes more parameters than ``serve.max_parameters``."""


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
    onnx: bytes | None = field(default=None, repr=False)  # an exported model's graph
    export_info: dict[str, Any] = field(default_factory=dict)  # its export.json
    runtime: str = TORCH  # what the replicas run it in (``for_runtime``)

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
        """Read ``weights.safetensors`` and ``model_config.json`` from a saved model folder (and
        an exported model's ``model.onnx`` and ``export.json``)."""
        graph, info = directory / ONNX_FILE, directory / EXPORT_FILE
        return cls(
            uri=uri,
            name=name,
            version=version,
            run_id=run_id,
            weights=(directory / WEIGHTS_FILE).read_bytes(),
            model_config=json.loads((directory / CONFIG_FILE).read_text()),
            test_metrics=dict(test_metrics or {}),
            onnx=graph.read_bytes() if graph.is_file() else None,
            export_info=json.loads(info.read_text()) if info.is_file() else {},
        )

    def load(self) -> tuple[nn.Module, ModelSpec]:
        """Build the model and load its weights (eval mode)."""
        return load_model_bytes(self.weights, self.model_config)

    def predictor(self, model: nn.Module, threads: int) -> Predict:
        """How a replica predicts: the bundle's ONNX graph in an ONNX Runtime session, or
        ``model`` (its loaded weights) in torch; ``threads``: the CPUs it reserves."""
        spec = self.spec
        if self.runtime == ONNXRUNTIME:
            from trainers.export.runtime import OnnxModel

            assert self.onnx is not None, "for_runtime adds the graph first"
            return OnnxModel(self.onnx, spec, threads).predict
        import torch

        from trainers.models import predict

        torch.set_num_threads(max(1, threads))
        return lambda rows: predict(model, spec, rows)

    def bounded(self, max_parameters: int) -> ModelBundle:
        """This bundle, when its config describes at most ``max_parameters`` parameters (counted
        without allocating them); else raises ModelTooLarge, before anything builds it."""
        from trainers.models import parameters_in

        count = parameters_in(self.spec)
        if count > max_parameters:
            raise ModelTooLarge(
                f"{self.label} describes {count:,} parameters, over serve.max_parameters "
                f"({max_parameters:,}); raise the limit to serve it"
            )
        return self

    def for_runtime(self, runtime: str) -> ModelBundle:
        """This bundle for ``serve.runtime``: ``auto`` runs an exported model's graph and any
        other model's weights; ``onnxruntime`` exports a model that was not (fp32, checked
        against its weights); ``torch`` refuses an int8 export, whose weights are not what was
        checked and registered. Raises RuntimeChoiceError."""
        quantized = self.export_info.get("quantized", "none") != "none"
        if runtime == TORCH and quantized:
            raise RuntimeChoiceError(
                f"{self.label} is an int8 ONNX export: serve.runtime torch would serve its fp32 "
                "weights instead; use serve.runtime onnxruntime (or auto)"
            )
        if runtime == TORCH or (runtime == "auto" and self.onnx is None):
            return dataclasses.replace(self, runtime=TORCH)
        if self.onnx is not None:
            return dataclasses.replace(self, runtime=ONNXRUNTIME)
        from trainers.export.check import checked_graph

        graph, info = checked_graph(*self.load())
        return dataclasses.replace(self, onnx=graph, export_info=info, runtime=ONNXRUNTIME)

    @property
    def spec(self) -> ModelSpec:
        """What the model is, besides its weights (its ``model_config.json``)."""
        return ModelSpec.from_dict(self.model_config)

    @property
    def reference(self) -> dict[str, str | None]:
        """Which model this is, as every answer names it: name, version and run."""
        return {"name": self.name, "version": self.version, "run_id": self.run_id}

    @property
    def label(self) -> str:
        """``digits v3`` or ``digits (run 1a2b3c4d)``."""
        if self.version:
            return f"{self.name} v{self.version}"
        return f"{self.name} (run {(self.run_id or '?')[:8]})"
