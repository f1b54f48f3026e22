"""The torch side of the recurrent families (``rnn``, ``lstm``, ``gru``): a recurrent network
over padded, packed sequences behind per-feature standardization, with a linear head on the
last step's state (both directions' when bidirectional). As a forecaster (``data.kind:
series``) the head gives, for each of ``horizon`` steps and each target column, the change from
the history's last value."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from trainers.families.base import Graph
from trainers.families.exported import ANSWER, STEPS
from trainers.families.scaled import Scaled
from trainers.families.tabular_net import answer_meaning, answered
from trainers.spec import ModelSpec


@dataclass(frozen=True)
class Forecast:
    """A forecasting head: ``horizon`` steps of the columns at ``targets``; ``relative``: the
    history is read relative to its last step (``data.scaling: last``)."""

    targets: list[int]
    horizon: int
    relative: bool


CELLS: dict[str, Callable[..., nn.Module]] = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


class Recurrent(Scaled):
    """Sequences ``[batch, steps, features + 1]`` (the last channel the mask of real steps, as
    ``trainers.data.sequences.pad`` makes them) to outputs: logits, or the standardized target; with
    a ``forecast`` head, ``[batch, horizon, targets]``: the history's last target values,
    standardized, plus the head's changes.

    The features are standardized in fp32 with buffers fitted on the training pool (they travel
    with the weights, so a served model takes raw steps), then cast to the weights' precision;
    padding is never seen by the recurrence (the sequences are packed by length).
    """

    def __init__(
        self,
        kind: str,
        in_features: int,
        out_features: int,
        hidden: int,
        layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.0,
        forecast: Forecast | None = None,
    ) -> None:
        super().__init__()
        self.layers, self.directions = layers, 2 if bidirectional else 1
        self.forecast = forecast
        self.rnn = CELLS[kind](
            in_features,
            hidden,
            num_layers=layers,
            batch_first=True,
            bidirectional=bidirectional,
            dropout=dropout if layers > 1 else 0.0,
        )
        self.head = nn.Linear(hidden * self.directions, out_features)
        self.add_scaling(in_features)

    def forward(self, sequences: torch.Tensor) -> torch.Tensor:
        mask = sequences[..., -1]
        steps = mask.sum(dim=1).clamp(min=1).long().cpu()
        raw = sequences[..., :-1]
        packed = pack_padded_sequence(
            self._values(raw), steps, batch_first=True, enforce_sorted=False
        )
        _, state = self.rnn(packed)
        return self._head(raw, state)

    def unpadded(self, raw: torch.Tensor) -> torch.Tensor:
        """The outputs of sequences ``[batch, steps, features]`` whose steps are all real (no
        mask channel, nothing packed): what an exported graph computes, one length at a time."""
        _, state = self.rnn(self._values(raw))
        return self._head(raw, state)

    def _values(self, raw: torch.Tensor) -> torch.Tensor:
        """The steps standardized in fp32, then cast to the weights' precision (bf16 or fp16
        under DeepSpeed's mixed precision)."""
        if self.forecast is not None and self.forecast.relative:  # a window: every step is real
            values = (raw.float() - raw[:, -1:].float()) / self.input_std.float()
        else:
            values = self.scale(raw)
        return values.to(self.head.weight.dtype)

    def _head(self, raw: torch.Tensor, state) -> torch.Tensor:
        last = state[0] if isinstance(state, tuple) else state  # LSTM: (h, c)
        batch = raw.shape[0]
        final = last.view(self.layers, self.directions, batch, -1)[-1]  # the top layer
        outputs = self.head(final.transpose(0, 1).reshape(batch, -1))
        if self.forecast is None:
            return outputs
        targets = self.forecast.targets
        start = self.scale(raw[:, -1])[:, targets]  # the last value, standardized
        change = outputs.float().view(batch, self.forecast.horizon, len(targets))
        return start[:, None, :] + change  # [batch, horizon, targets], standardized

    def set_normalization(self, sequences: np.ndarray, targets: np.ndarray | None) -> None:
        """Fit the standardization on the real steps of the training sequences."""
        super().set_normalization(sequences[sequences[..., -1] > 0][:, :-1], targets)


class Answering(nn.Module):
    """A recurrent model's exported graph: real steps ``[batch, time, features]`` in (one length
    per call), its answer in numbers out: class probabilities, a value or a forecast in the
    target's own units."""

    def __init__(self, model: Recurrent, spec: ModelSpec) -> None:
        super().__init__()
        self.model, self.spec = model, spec

    def forward(self, steps: torch.Tensor) -> torch.Tensor:
        outputs = self.model.unpadded(steps)
        if self.model.forecast is None:
            return answered(self.model, self.spec, outputs)
        targets = self.model.forecast.targets
        mean, std = self.model.input_mean[targets], self.model.input_std[targets]
        return outputs.float() * std.float() + mean.float()


def graph(model: nn.Module, spec: ModelSpec) -> Graph:
    """The exported graph of a recurrent model, with dynamic batch and time axes."""
    assert isinstance(model, Recurrent)
    width = spec.in_features
    return Graph(
        module=Answering(model, spec).eval(),
        inputs={STEPS: np.zeros((2, 3, width), dtype=np.float32)},
        dynamic={STEPS: {0: "batch", 1: "time"}},
        output=ANSWER,
        meaning={
            STEPS: f"[batch, time, {width}] float32: raw steps, every one real (no padding); "
            "sequences of different lengths go in separate calls",
            ANSWER: answer_meaning(spec),
        },
    )
