"""Models of any family: building from a spec, prediction, and the weights-plus-config format.

A saved model is two files: ``weights.safetensors`` (tensors only, nothing to unpickle) and
``model_config.json`` (the ``ModelSpec``: family, its options and what the data looked like).
Serving and the MLflow pyfunc load exactly these two files.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load as load_safetensors_bytes
from safetensors.torch import load_file, save_file
from torch import nn

from trainers.families import family_of
from trainers.spec import CONFIG_FILE, WEIGHTS_FILE, ModelSpec


def build_model(spec: ModelSpec) -> nn.Module:
    """The untrained model a spec describes, built by its family."""
    return family_of(spec.kind).build(spec)


def parameters_in(spec: ModelSpec) -> int:
    """How many numbers (parameters and buffers) the model ``spec`` describes holds, counted on
    torch's meta device: nothing is allocated, however large the spec."""
    with torch.device("meta"):
        model = build_model(spec)
    return sum(tensor.numel() for tensor in model.state_dict().values())


def predict(
    model: nn.Module, spec: ModelSpec, features: np.ndarray
) -> tuple[np.ndarray, np.ndarray | None]:
    """Predictions in the data's own terms: (labels, class probabilities) or (values, None)."""
    return family_of(spec.kind).predict(model, spec, features)


def save_model(directory: Path, model: nn.Module, spec: ModelSpec) -> Path:
    """Write ``weights.safetensors`` and ``model_config.json`` into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().float().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(tensors, str(directory / WEIGHTS_FILE))
    (directory / CONFIG_FILE).write_text(json.dumps(spec.to_dict(), indent=2))
    return directory


def load_model(directory: Path) -> tuple[nn.Module, ModelSpec]:
    """Load a model saved by :func:`save_model`; no pickle is involved."""
    directory = Path(directory)
    spec = ModelSpec.from_dict(json.loads((directory / CONFIG_FILE).read_text()))
    return _with_weights(spec, load_file(str(directory / WEIGHTS_FILE))), spec


def load_model_bytes(weights: bytes, model_config: dict) -> tuple[nn.Module, ModelSpec]:
    """Load a model from the bytes of its weights file and its parsed model config."""
    spec = ModelSpec.from_dict(model_config)
    return _with_weights(spec, load_safetensors_bytes(weights)), spec


def _with_weights(spec: ModelSpec, tensors: dict[str, torch.Tensor]) -> nn.Module:
    model = build_model(spec)
    model.load_state_dict(tensors)
    model.eval()
    return model
