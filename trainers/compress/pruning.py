"""Structured pruning: each hidden layer of an MLP, or the recurrent state of an RNN, LSTM or GRU
(every layer and direction), keeps its most important units, and the network is rebuilt smaller
and dense (not masked), so it is smaller and faster as it is stored, exported and served. A
unit's importance is the L2 norm of its incoming weights (and biases; a recurrent unit's over
all its gates) times the L2 norm of its outgoing weights: a unit that reads little or passes
little on matters little (the magnitude criterion of Li et al., 2017, taken on both sides)."""

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


GATES = {"rnn": 1, "gru": 3, "lstm": 4}  # blocks of hidden-size rows in a layer's weights


def prune(
    model: nn.Module, spec: ModelSpec, fraction: float
) -> tuple[ModelSpec, dict[str, np.ndarray]]:
    """The spec of the pruned model and its weights (with the original's scaling and
    embeddings), ``fraction`` of its hidden units removed by importance."""
    if spec.kind == "mlp" and isinstance(model, Standardized):
        return prune_mlp(model, spec, fraction)
    if spec.kind in GATES:
        return prune_recurrent(model, spec, fraction)
    raise ValueError(f"pruning takes an mlp, rnn, lstm or gru; the teacher is a {spec.kind}")


def prune_mlp(
    model: Standardized, spec: ModelSpec, fraction: float
) -> tuple[ModelSpec, dict[str, np.ndarray]]:
    """An MLP without ``fraction`` of each hidden layer's least important units."""
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


def prune_recurrent(
    model: nn.Module, spec: ModelSpec, fraction: float
) -> tuple[ModelSpec, dict[str, np.ndarray]]:
    """A recurrent model whose every layer and direction keeps ``1 - fraction`` of its hidden
    units (each its own most important ones): the rows of each gate, the recurrent columns, the
    next layer's (or the head's) input columns of the units it drops go."""
    rnn, head = model.get_submodule("rnn"), model.get_submodule("head")
    assert isinstance(rnn, nn.RNNBase) and isinstance(head, nn.Linear)
    hidden, layers = rnn.hidden_size, rnn.num_layers
    directions, gates = (2 if rnn.bidirectional else 1), GATES[spec.kind]
    (count,) = kept_widths([hidden], fraction)
    state = model.state_dict()

    def name(kind: str, layer: int, direction: int) -> str:
        return f"rnn.{kind}_l{layer}{'_reverse' if direction else ''}"

    def reader(layer: int) -> torch.Tensor:  # what reads a layer's outputs
        return (
            state[f"{name('weight_ih', layer + 1, 0)}"]
            if layer + 1 < layers
            else state["head.weight"]
        )

    kept: dict[tuple[int, int], torch.Tensor] = {}
    with torch.no_grad():
        for layer in range(layers):
            for direction in range(directions):
                blocks = [state[name(k, layer, direction)] for k in ("weight_ih", "weight_hh")]
                blocks += [
                    state[name(k, layer, direction)][:, None] for k in ("bias_ih", "bias_hh")
                ]
                incoming = torch.cat([b.reshape(gates, hidden, -1) for b in blocks], dim=2)
                recurrent = state[name("weight_hh", layer, direction)]
                columns = reader(layer)[:, direction * hidden : (direction + 1) * hidden]
                outgoing = torch.cat([recurrent, columns]).norm(dim=0)
                importance = incoming.norm(dim=(0, 2)) * outgoing
                order = torch.argsort(importance, descending=True)
                kept[layer, direction] = torch.sort(order[:count]).values

    def outputs_of(layer: int) -> torch.Tensor:  # a layer's output columns that stay
        return torch.cat([kept[layer, d] + d * hidden for d in range(directions)])

    for layer in range(layers):
        for direction in range(directions):
            units = kept[layer, direction]
            rows = torch.cat([units + gate * hidden for gate in range(gates)])
            inputs = outputs_of(layer - 1) if layer else slice(None)
            weight_ih = name("weight_ih", layer, direction)
            state[weight_ih] = state[weight_ih][rows][:, inputs]
            weight_hh = name("weight_hh", layer, direction)
            state[weight_hh] = state[weight_hh][rows][:, units]
            for bias in ("bias_ih", "bias_hh"):
                state[name(bias, layer, direction)] = state[name(bias, layer, direction)][rows]
    state["head.weight"] = state["head.weight"][:, outputs_of(layers - 1)]
    assert head.in_features == hidden * directions
    pruned = dataclasses.replace(spec, options={**spec.options, "hidden": count})
    smaller = build_model(pruned)
    smaller.load_state_dict(state)  # the shapes of the smaller network, checked
    return pruned, {k: v.detach().cpu().numpy() for k, v in smaller.state_dict().items()}


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
