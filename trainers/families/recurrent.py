"""The recurrent families of the seed: ``rnn``, ``lstm`` and ``gru`` on sequence data
(``data.kind: sequence``), for sequence classification or regression, and on a time series
(``data.kind: series``), for multi-step forecasting. One config section and one module for the
three; each is its own registered family."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

import numpy as np
from pydantic import Field

from trainers.config import Section
from trainers.data.series import SeriesInput
from trainers.families import exported, supervised
from trainers.families.base import Export, Family
from trainers.sections import init_from_field
from trainers.spec import ModelSpec

if TYPE_CHECKING:
    from torch import nn

    from trainers.families.base import Graph, Objective


class RecurrentConfig(Section):
    """A recurrent network (Elman RNN, LSTM or GRU) over each sequence's steps, with a linear
    head on its last state."""

    kind: Literal["rnn", "lstm", "gru"] = Field(
        "lstm", description="Model family: rnn (tanh Elman), lstm or gru."
    )
    hidden: int = Field(64, ge=1, description="Width of the recurrent state.")
    layers: int = Field(1, ge=1, le=8, description="Stacked recurrent layers.")
    bidirectional: bool = Field(
        False, description="Read each sequence both ways; the head takes both last states."
    )
    dropout: float = Field(
        0.0, ge=0.0, lt=1.0, description="Dropout between stacked layers (layers > 1)."
    )

    init_from: str | None = init_from_field()


def forecasts(spec: ModelSpec) -> bool:
    """Whether the model is a forecaster (trained on ``data.kind: series``)."""
    return "series" in spec.preprocessing


def build(spec: ModelSpec) -> nn.Module:
    from trainers.families.recurrent_net import Forecast, Recurrent

    cfg = RecurrentConfig.model_validate(spec.options)
    head = None
    if forecasts(spec):
        schema = SeriesInput.of_model(spec)
        relative = spec.preprocessing["scaling"] == "last"
        head = Forecast(schema.target_index, schema.horizon, relative)
    return Recurrent(
        cfg.kind,
        spec.in_features,
        spec.out_features,
        cfg.hidden,
        cfg.layers,
        cfg.bidirectional,
        cfg.dropout,
        head,
    )


def fit(model: nn.Module, sequences: np.ndarray, targets: np.ndarray | None) -> None:
    from trainers.families.recurrent_net import Recurrent

    assert isinstance(model, Recurrent)
    model.set_normalization(sequences, targets)


def objective(
    spec: ModelSpec, model: nn.Module, class_weights: Sequence[float] | None = None
) -> Objective:
    if forecasts(spec):
        from trainers.families.forecaster import Forecasting

        return Forecasting.for_forecaster(spec, model)
    return supervised.objective(spec, model, class_weights)


def predict(
    model: nn.Module, spec: ModelSpec, features: np.ndarray
) -> tuple[np.ndarray, np.ndarray | None]:
    if forecasts(spec):
        from trainers.families import forecaster

        return forecaster.predict(model, spec, features)
    return supervised.predict(model, spec, features)


def graph(model: nn.Module, spec: ModelSpec) -> Graph:
    from trainers.families import recurrent_net

    return recurrent_net.graph(model, spec)


# Real steps in, one length per call (dynamic batch and time axes); probabilities, values or
# forecasts out.
EXPORT = Export(graph=graph, feeds=exported.by_length, answer=exported.probabilities_or_values)


def _family(kind: str) -> Family:
    return Family(
        kind=kind,
        config=RecurrentConfig,
        build=build,
        fit=fit,
        objective=objective,
        predict=predict,
        pbt_mutable=("model.dropout",),
        data_kinds=("sequence", "series"),
        export=EXPORT,
    )


RNN, LSTM, GRU = _family("rnn"), _family("lstm"), _family("gru")
