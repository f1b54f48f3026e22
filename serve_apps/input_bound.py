"""The largest input a tabular model answers finitely: the value range the HTTP API states and
enforces for its rows, worked out from the weights."""

from __future__ import annotations

import numpy as np
from torch import nn

from serve_apps.json_body import F32_MAX, round_down
from trainers.spec import ModelSpec


def safe_input_bound(model: nn.Module, spec: ModelSpec) -> float | None:
    """A bound B such that any row with every value in [-B, B] gets a finite output in float32.

    Interval arithmetic in float64 on the weights: the standardised input is at most
    (B + |mean|) / std, a linear layer maps a bound z to |W| z + |b|, and every activation used
    (relu, tanh, sigmoid, gelu) to at most |x| + 1, so the output is at most A*B + C; B keeps
    that under a quarter of the float32 maximum. None when the weights are not finite or the
    model has a layer this does not know (then only the output check guards).
    """
    try:
        mean = model.get_buffer("input_mean").double().abs().cpu().numpy()
        std = model.get_buffer("input_std").double().cpu().numpy()
        slope, offset = 1.0 / std, mean / std
        for table in model.get_submodule("embeddings").children():  # bounded, no slope
            assert isinstance(table, nn.Embedding)
            largest = table.weight.detach().double().abs().amax(dim=0).cpu().numpy()
            slope, offset = np.append(slope, np.zeros_like(largest)), np.append(offset, largest)
        for layer in model.get_submodule("net").children():
            if isinstance(layer, nn.Linear):
                weight = layer.weight.detach().double().abs().cpu().numpy()
                bias = layer.bias.detach().double().abs().cpu().numpy()
                slope, offset = weight @ slope, weight @ offset + bias
            elif isinstance(layer, (nn.ReLU, nn.Tanh, nn.Sigmoid, nn.GELU)):
                offset = offset + 1.0
            elif not isinstance(layer, nn.Dropout):
                return None
        a, c = float(slope.max()), float(offset.max())
        if spec.task != "classification":
            scale = float(model.get_buffer("target_std").double().abs().item())
            a, c = (
                a * scale,
                c * scale + float(model.get_buffer("target_mean").double().abs().item()),
            )
    except AttributeError:
        return None
    if not (np.isfinite(a) and np.isfinite(c)) or a <= 0 or c >= F32_MAX / 4:
        return None
    return round_down(min((F32_MAX / 4 - c) / a, F32_MAX / 4))
