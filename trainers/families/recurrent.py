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
from trainers.families import supervised
from trainers.families.base import Family
from trainers.inputs import InputSchema
from trainers.sequences import SequenceInput
from trainers.series import SeriesInput
from trainers.spec import ModelSpec

if TYPE_CHECKING:
    from torch import nn

    from trainers.families.base import Objective


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


def forecasts(spec: ModelSpec) -> bool:
    """Whether the model is a forecaster (trained on ``data.kind: series``)."""
    return "series" in spec.preprocessing


def build(spec: ModelSpec) -> nn.Module:
    from trainers.recurrent import Forecast, Recurrent

    cfg = RecurrentConfig.model_validate(spec.options)
    head = None
    if forecasts(spec):
        schema = series_input(spec)
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
    from trainers.recurrent import Recurrent

    assert isinstance(model, Recurrent)
    model.set_normalization(sequences, targets)


def objective(
    spec: ModelSpec, model: nn.Module, class_weights: Sequence[float] | None = None
) -> Objective:
    if forecasts(spec):
        from trainers.forecasting import Forecasting

        return Forecasting.for_forecaster(spec, model)
    return supervised.objective(spec, model, class_weights)


def predict(
    model: nn.Module, spec: ModelSpec, features: np.ndarray
) -> tuple[np.ndarray, np.ndarray | None]:
    if forecasts(spec):
        from trainers import forecasting

        return forecasting.predict(model, spec, features)
    return supervised.predict(model, spec, features)


def series_input(spec: ModelSpec) -> SeriesInput:
    entry = dict(spec.preprocessing["series"])
    names, targets = tuple(entry.pop("feature_names")), tuple(entry.pop("targets"))
    return SeriesInput(feature_names=names, targets=targets, **entry)


def input_schema(spec: ModelSpec) -> InputSchema:
    if forecasts(spec):
        return series_input(spec)
    return SequenceInput(
        **{**spec.preprocessing["sequence"], "feature_names": tuple(spec.feature_names)}
    )


def example_input(spec: ModelSpec, count: int) -> list:
    """``count`` sequences of two steps of zeros (the features' scale is the model's own); a
    forecaster's: ``count`` histories of ``data.window`` steps of zeros."""
    steps = series_input(spec).window if forecasts(spec) else 2
    return [[[0.0] * spec.in_features] * steps for _ in range(count)]


def _family(kind: str) -> Family:
    return Family(
        kind=kind,
        config=RecurrentConfig,
        build=build,
        fit=fit,
        objective=objective,
        predict=predict,
        input_schema=input_schema,
        example_input=example_input,
        pbt_mutable=("model.dropout",),
        data_kinds=("sequence", "series"),
    )


RNN, LSTM, GRU = _family("rnn"), _family("lstm"), _family("gru")
