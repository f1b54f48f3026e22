"""The ``compression`` section (``redblue compress CONFIG --teacher MODEL``) and what a plan
carries of it to the workers. No torch here."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pydantic import Field

from trainers.config import Section


class CompressionSection(Section):
    method: Literal["prune", "distill"] = Field(
        "distill",
        description="prune: the teacher (an mlp, rnn, lstm or gru) without a fraction of its "
        "hidden units, those of least importance, then fine-tuned. distill: the config's model "
        "(the student) trained on the teacher's softened outputs and the true labels.",
    )
    prune_fraction: float = Field(
        0.5,
        gt=0.0,
        lt=1.0,
        description="prune: the share of the hidden units removed from each layer (and direction) "
        "(importance: the L2 norm of a unit's incoming weights times that of its outgoing ones).",
    )
    temperature: float = Field(
        4.0,
        gt=0.0,
        le=100.0,
        description="distill: the softmax temperature of the teacher's and the student's "
        "outputs in the distillation loss (classification).",
    )
    alpha: float = Field(
        0.7,
        ge=0.0,
        le=1.0,
        description="distill: the weight of the distillation loss (the teacher's outputs); "
        "1 - alpha weighs the loss on the true labels.",
    )


@dataclass(frozen=True)
class Teacher:
    """A trained model the student learns from: its weights (safetensors bytes) and config,
    and how (``temperature``, ``alpha``)."""

    weights: bytes = field(repr=False)
    model_config: dict
    temperature: float
    alpha: float
