"""What a model family declares, in one place: the contract between a family module and the
generic red-blue loop, engines, fusion, checkpoints, MLflow and serving.

No torch at import: the driver validates a config (whose ``model:`` section is the family's) and
plans a run before torch loads. A family module imports torch inside the functions it declares.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from trainers.config import OptimConfig, Section
from trainers.spec import ModelSpec

if TYPE_CHECKING:
    import torch
    from torch import nn

    from trainers.engine.base import Replica
    from trainers.families.summed_metrics import Sums


class Objective(Protocol):
    """How a family trains and is measured. A ``Replica`` maps each network's name to its engine
    (one per network: a family with two networks, such as a GAN, has two engines and two
    optimizers per replica, and ``train_step`` decides how they step).

    Optional, where a family has them: ``extra_losses`` (the names of the losses ``train_step``
    returns after the training loss), ``monitored(outputs, targets)`` (more metrics of V at
    each evaluation, logged as ``val/<name>``; a GAN's label accuracy and classes covered) and
    ``samples(replica)`` (what the evaluated model generates, as ``predict`` answers: a GAN's
    rows of each class, drawn in MLflow at each evaluation)."""

    def train_step(
        self,
        replica: Replica,
        features: torch.Tensor,
        targets: torch.Tensor,
        weights: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """One micro-step of training on a batch; returns the detached training loss (a vector
        with the losses the objective names in an ``extra_losses`` attribute after it, where it
        has one: a GAN's discriminator loss). ``weights``
        (one per sample, from ``strategy.clean``) weigh each sample's loss: the batch's loss is
        their weighted mean, and a sample of weight 0 contributes no gradient."""
        ...

    def outputs(self, replica: Replica, features: torch.Tensor) -> torch.Tensor:
        """The outputs evaluation scores (the loss and metrics read these)."""
        ...

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The loss that val_loss, the held-out losses and the fusion rule compare."""
        ...

    def metrics(self, outputs: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
        """Test metrics on T: ``test_loss`` and the family's own (the score's metric among them);
        ``metrics_of(summary(outputs, targets))``."""
        ...

    def summary(self, outputs: torch.Tensor, targets: torch.Tensor) -> Sums:
        """A batch's additive sums, ``loss_sum`` and ``loss_count`` among them: what a part
        streamed batch by batch is scored by (``trainers.families.summed_metrics``)."""
        ...

    def metrics_of(self, sums: Sums) -> dict[str, float]:
        """The test metrics from the sums of every batch of T."""
        ...


@dataclass(frozen=True)
class Graph:
    """What ``redblue export`` turns into an ONNX graph: ``module`` takes the named inputs (in
    order) and gives one output, the model's answer in numbers (class probabilities, values in
    the target's units, forecasts, generated rows). ``dynamic``: each input's axes that vary
    (``batch``, ``time``); ``meaning``: each input and the output in words, for export.json."""

    module: Any  # an nn.Module
    inputs: dict[str, np.ndarray]  # example inputs by name, in the order ``module`` takes them
    dynamic: dict[str, dict[int, str]]
    output: str
    meaning: dict[str, str]


@dataclass(frozen=True)
class Feed:
    """Some of a model's samples (``rows``: their indices; None: all) as a graph's inputs."""

    rows: np.ndarray | None
    inputs: dict[str, np.ndarray]


@dataclass(frozen=True)
class Export:
    """How a family's model runs as an ONNX graph. ``graph`` builds it (torch); ``feeds`` and
    ``answer`` need numpy only, so an ONNX Runtime replica or pyfunc runs without torch:
    ``feeds(spec, features)`` splits a model's features (as its input schema makes them) into the
    graph's inputs, and ``answer(spec, features, outputs)`` gives what ``Family.predict`` gives
    from the graph's outputs (in the samples' order)."""

    graph: Callable[[nn.Module, ModelSpec], Graph]
    feeds: Callable[[ModelSpec, np.ndarray], list[Feed]]
    answer: Callable[[ModelSpec, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray | None]]


def one_network(model: nn.Module) -> dict[str, nn.Module]:
    """The networks of a family with one: the model itself, under the name ``model``."""
    return {"model": model}


def same_optim(network: str, optim: OptimConfig, options: dict) -> OptimConfig:
    """Every network of a family trains with the run's ``optim`` section."""
    return optim


@dataclass(frozen=True)
class Family:
    """One model family (torchtitan's ``TrainSpec`` is the pattern): registered by ``kind`` in
    ``trainers.families``; everything outside its module asks it instead of knowing it."""

    kind: str
    config: type[Section]  # the ``model:`` section, with ``kind: Literal[<kind>]``
    build: Callable[[ModelSpec], nn.Module]  # the model, all its networks, untrained
    fit: Callable[[nn.Module, np.ndarray, np.ndarray | None], None]  # state fitted on P'
    # The objective of a model; the class weights (optim.class_weights) weigh its training loss.
    objective: Callable[[ModelSpec, nn.Module, Sequence[float] | None], Objective]
    predict: Callable[[nn.Module, ModelSpec, np.ndarray], tuple[np.ndarray, np.ndarray | None]]
    networks: Callable[[nn.Module], dict[str, nn.Module]] = one_network  # engine + fusion each
    # The optimizer settings of one network (by name) from ``optim`` and the ``model:`` options.
    network_optim: Callable[[str, OptimConfig, dict], OptimConfig] = same_optim
    pbt_mutable: tuple[str, ...] = ()  # ``model.*`` keys PBT may change while a trial runs
    data_kinds: tuple[str, ...] = ("table",)  # the data.kind(s) it trains on
    # The task its models are, when not their data's kind (a GAN's: generation, from a table).
    task: str | None = None
    # ``optim.*`` defaults of its own (a key the config sets keeps the config's value).
    optim_defaults: Mapping[str, Any] = field(default_factory=dict)
    export: Export | None = None  # how it runs as an ONNX graph; None: it cannot
