"""The recurrent families of the seed: ``rnn``, ``lstm`` and ``gru`` on sequence data
(``data.kind: sequence``), for sequence classification or regression. One config section and one
module for the three; each is its own registered family."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import numpy as np
from pydantic import Field

from trainers.config import Section
from trainers.families import supervised
from trainers.families.base import Family
from trainers.sequences import SequenceInput
from trainers.spec import ModelSpec

if TYPE_CHECKING:
    from torch import nn


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


def build(spec: ModelSpec) -> nn.Module:
    from trainers.recurrent import Recurrent

    cfg = RecurrentConfig.model_validate(spec.options)
    return Recurrent(
        cfg.kind,
        spec.in_features,
        spec.out_features,
        cfg.hidden,
        cfg.layers,
        cfg.bidirectional,
        cfg.dropout,
    )


def fit(model: nn.Module, sequences: np.ndarray, targets: np.ndarray | None) -> None:
    from trainers.recurrent import Recurrent

    assert isinstance(model, Recurrent)
    model.set_normalization(sequences, targets)


def input_schema(spec: ModelSpec) -> SequenceInput:
    return SequenceInput(
        **{**spec.preprocessing["sequence"], "feature_names": tuple(spec.feature_names)}
    )


def example_input(spec: ModelSpec, count: int) -> list:
    """``count`` sequences of two steps of zeros (the features' scale is the model's own)."""
    return [[[0.0] * spec.in_features] * 2 for _ in range(count)]


def _family(kind: str) -> Family:
    return Family(
        kind=kind,
        config=RecurrentConfig,
        build=build,
        fit=fit,
        objective=supervised.objective,
        predict=supervised.predict,
        input_schema=input_schema,
        example_input=example_input,
        pbt_mutable=("model.dropout",),
        data_kind="sequence",
    )


RNN, LSTM, GRU = _family("rnn"), _family("lstm"), _family("gru")
