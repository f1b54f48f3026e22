"""Structured pruning of an MLP: each hidden layer keeps its most important units, and the
network becomes a smaller dense MLP (not a masked one), so it is smaller and faster as it is
stored, exported and served. A unit's importance is the L2 norm of its incoming weights (and
bias) times the L2 norm of its outgoing weights: a unit that reads little or passes little on
matters little (the magnitude criterion of Li et al., 2017, taken on both sides)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch
from torch import nn

from trainers.families.tabular_net import Standardized
from trainers.models import build_model
from trainers.spec import ModelSpec


def kept_widths(widths: list[int], fraction: float) -> list[int]:
    """Each hidden layer's width after removing ``fraction`` of its units (one at least)."""
    return [max(1, math.ceil(width * (1 - fraction))) for width in widths]


def prune_mlp(
    model: nn.Module, spec: ModelSpec, fraction: float
) -> tuple[ModelSpec, dict[str, np.ndarray]]:
    """The spec of the pruned MLP and its weights (with the original's scaling and
    embeddings), each hidden layer without ``fraction`` of its least important units."""
    if spec.kind != "mlp" or not isinstance(model, Standardized):
        raise ValueError(f"pruning takes an mlp; the teacher is a {spec.kind}")
    linears = [m for m in model.net if isinstance(m, nn.Linear)]
    widths = [layer.out_features for layer in linears[:-1]]
    keep = kept_widths(widths, fraction)
    kept: list[torch.Tensor] = []
    with torch.no_grad():
        for i, (layer, count) in enumerate(zip(linears[:-1], keep, strict=True)):
            incoming = torch.cat([layer.weight, layer.bias[:, None]], dim=1).norm(dim=1)
            outgoing = linears[i + 1].weight.norm(dim=0)
            order = torch.argsort(incoming * outgoing, descending=True)
            kept.append(torch.sort(order[:count]).values)
    pruned = dataclasses.replace(spec, options={**spec.options, "hidden": keep})
    smaller = build_model(pruned)
    state = model.state_dict()
    names = [name for name, m in model.net.named_children() if isinstance(m, nn.Linear)]
    for i, name in enumerate(names):
        rows = kept[i] if i < len(kept) else slice(None)
        columns = kept[i - 1] if i > 0 else slice(None)
        weight = state[f"net.{name}.weight"][rows][:, columns]
        state[f"net.{name}.weight"] = weight
        state[f"net.{name}.bias"] = state[f"net.{name}.bias"][rows]
    smaller.load_state_dict(state)  # the shapes of the smaller network, checked
    return pruned, {k: v.detach().cpu().numpy() for k, v in smaller.state_dict().items()}


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
