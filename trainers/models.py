"""Models: architecture, building from config, and the weights-plus-config file format.

A saved model is two files: ``weights.safetensors`` (tensors only, nothing to unpickle) and
``model_config.json`` (the architecture and what the data looked like). Serving and the MLflow
pyfunc load exactly these two files.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load as load_safetensors_bytes
from safetensors.torch import load_file, save_file
from torch import nn

from trainers.spec import ModelSpec

WEIGHTS_FILE = "weights.safetensors"
CONFIG_FILE = "model_config.json"
ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "gelu": nn.GELU}


class MLP(nn.Module):
    """A multilayer perceptron that standardizes its inputs (and, for regression, its targets).

    The normalization statistics are buffers, so they travel with the weights and a served model
    takes raw features.
    """

    input_mean: torch.Tensor
    input_std: torch.Tensor
    target_mean: torch.Tensor
    target_std: torch.Tensor

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = spec.in_features
        for hidden in spec.hidden:
            layers += [nn.Linear(width, hidden), ACTIVATIONS[spec.activation]()]
            if spec.dropout > 0:
                layers.append(nn.Dropout(spec.dropout))
            width = hidden
        layers.append(nn.Linear(width, spec.out_features))
        self.net = nn.Sequential(*layers)
        self.register_buffer("input_mean", torch.zeros(spec.in_features))
        self.register_buffer("input_std", torch.ones(spec.in_features))
        self.register_buffer("target_mean", torch.zeros(1))
        self.register_buffer("target_std", torch.ones(1))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Raw outputs: logits (classification) or the standardized target (regression).

        Features are standardized in fp32 (the buffers stay fp32 under DeepSpeed's mixed
        precision, which casts parameters only) and only then cast to the weights' precision.
        """
        scaled = (features.float() - self.input_mean.float()) / self.input_std.float()
        return self.net(scaled.to(self.weight_dtype))

    @property
    def weight_dtype(self) -> torch.dtype:
        """The precision of the weights (bf16 or fp16 under DeepSpeed's mixed precision)."""
        return next(self.net.parameters()).dtype

    def set_normalization(self, features: np.ndarray, targets: np.ndarray | None) -> None:
        """Fit the standardization buffers on training data."""
        std = features.std(axis=0)
        self.input_mean.copy_(torch.as_tensor(features.mean(axis=0)))
        self.input_std.copy_(torch.as_tensor(np.where(std > 1e-8, std, 1.0)))
        if targets is not None:
            self.target_mean.fill_(float(targets.mean()))
            self.target_std.fill_(float(max(targets.std(), 1e-8)))


def build_model(spec: ModelSpec) -> MLP:
    """Build the model a spec describes (only ``mlp`` exists so far)."""
    if spec.kind != "mlp":
        raise ValueError(f"unknown model kind {spec.kind!r}")
    return MLP(spec)


def loss_fn(
    task: str,
    outputs: torch.Tensor,
    targets: torch.Tensor,
    target_mean: float = 0.0,
    target_std: float = 1.0,
) -> torch.Tensor:
    """Cross-entropy for classification; MSE on the standardized target for regression."""
    if task == "classification":
        return nn.functional.cross_entropy(outputs.float(), targets)
    scaled = (targets.float() - target_mean) / target_std
    return nn.functional.mse_loss(outputs.float().squeeze(-1), scaled)


@torch.no_grad()
def predict(
    model: MLP, spec: ModelSpec, features: np.ndarray
) -> tuple[np.ndarray, np.ndarray | None]:
    """Predictions in the data's own terms: (labels, class probabilities) or (values, None)."""
    model.eval()
    device = next(model.parameters()).device
    outputs = model(torch.tensor(features, dtype=torch.float32, device=device)).float()
    if spec.task == "classification":
        probabilities = torch.softmax(outputs, dim=-1).cpu().numpy()
        return np.asarray(spec.classes)[probabilities.argmax(axis=1)], probabilities
    values = (outputs.squeeze(-1) * model.target_std.float() + model.target_mean.float()).cpu()
    return values.numpy(), None


def save_model(directory: Path, model: nn.Module, spec: ModelSpec) -> Path:
    """Write ``weights.safetensors`` and ``model_config.json`` into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().float().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(tensors, str(directory / WEIGHTS_FILE))
    (directory / CONFIG_FILE).write_text(json.dumps(asdict(spec), indent=2))
    return directory


def load_model(directory: Path) -> tuple[MLP, ModelSpec]:
    """Load a model saved by :func:`save_model`; no pickle is involved."""
    directory = Path(directory)
    spec = ModelSpec(**json.loads((directory / CONFIG_FILE).read_text()))
    return _with_weights(spec, load_file(str(directory / WEIGHTS_FILE))), spec


def load_model_bytes(weights: bytes, model_config: dict) -> tuple[MLP, ModelSpec]:
    """Load a model from the bytes of its weights file and its parsed model config."""
    spec = ModelSpec(**model_config)
    return _with_weights(spec, load_safetensors_bytes(weights)), spec


def _with_weights(spec: ModelSpec, tensors: dict[str, torch.Tensor]) -> MLP:
    model = build_model(spec)
    model.load_state_dict(tensors)
    model.eval()
    return model
