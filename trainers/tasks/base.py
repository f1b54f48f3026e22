"""What a task declares, in one place: the contract between a task module and the generic plan,
loop, CLI, evaluation, registry, pyfunc, serving and ``deploy --check``.

A task is the data's axis (``data.kind``: a table, sequences, a series; generation next), beside
the model family's (``trainers.families``). It says how its data is read, checked, split and
encoded into a ``Dataset`` (whose samples the loop batches by index), what a trained model takes
and answers, which metric ranks models, what the run logs about its data, which extra evaluation
artifacts it has, and what ``deploy --check`` sends. Its HTTP request (shape, parser, OpenAPI
schema) is declared beside it in ``serve_apps/requests/<kind>.py``. No torch at import.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from trainers.config import RunSettings
from trainers.dataset import Dataset, InputSchema, Split
from trainers.spec import ModelSpec, ScoreRule


@dataclass(frozen=True)
class PreparedData:
    """A task's data, ready to plan a run on: encoded, split, and the spec of its model."""

    dataset: Dataset
    split: Split
    spec: ModelSpec
    # Metrics of reference predictions on T, logged beside the model's (series: the baselines).
    reference_metrics: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class DataReport:
    """How the data was read and split: lines printed before training (``warnings`` in
    yellow), MLflow params and JSON artifacts of the run."""

    lines: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    params: dict[str, str] = field(default_factory=dict)
    artifacts: dict[str, dict] = field(default_factory=dict)


@dataclass(frozen=True)
class CheckInputs:
    """What ``deploy --check`` sends: a few inputs as a user gives them (rows of numbers,
    records, sequences, or histories), and the true answers where the data set is bundled."""

    inputs: Any
    truth: list | dict | None = None


def model_spec(cfg: RunSettings, dataset: Dataset, in_features: int, **data: Any) -> ModelSpec:
    """The spec of the model a run trains: the family's ``model:`` section (``kind`` included)
    and what the data looks like; ``data``: the task's own entries (preprocessing, ...)."""
    options = cfg.model.model_dump(exclude={"init_from"})  # a warm start, not the model
    return ModelSpec(
        kind=str(options["kind"]),
        task=dataset.task,
        in_features=in_features,
        out_features=dataset.num_outputs,
        options=options,
        feature_names=list(dataset.feature_names),
        classes=list(dataset.classes),
        **data,
    )


def as_is(schema: InputSchema, predictions: np.ndarray) -> Any:
    return predictions


def no_artifacts(dataset: Dataset, split: Split, spec: ModelSpec, predicted: np.ndarray) -> dict:
    return {}


@dataclass(frozen=True)
class Task:
    """One task, registered by its ``data.kind`` in ``trainers.tasks``; everything outside its
    module asks it instead of knowing it."""

    kind: str  # the data.kind it reads
    prepare: Callable[[RunSettings], PreparedData]  # read, check, split, encode; the model spec
    input_schema: Callable[[ModelSpec], InputSchema]  # what pyfunc, serving, predict check
    example_input: Callable[[ModelSpec, int], list]  # inputs to try a model on, without data
    check_inputs: Callable[[ModelSpec, str | None, int], CheckInputs]  # deploy --check's inputs
    describe: Callable[[Dataset, Split], DataReport]  # printed, and logged to the run
    # The pyfunc model's answer for predictions (a forecaster's: a frame of steps).
    answer: Callable[[InputSchema, np.ndarray], Any] = as_is
    # Evaluation artifacts of the kept model on T beyond its task type's (name -> figure/JSON).
    artifacts: Callable[[Dataset, Split, ModelSpec, np.ndarray], dict] = no_artifacts
    score: Callable[[ModelSpec], ScoreRule] = lambda spec: ScoreRule.for_task(spec.task)
    batch_prediction: bool = True  # ``redblue predict``: rows that Ray Data may batch apart
    streams: bool = False  # data.streaming: its samples are independent rows of files
    # Its model takes requests, not samples of the data (generation): examples come from
    # ``example_input``, and a model is scored by ``measure`` rather than by its predictions.
    asks_requests: bool = False
    # (predict, spec, dataset, split) -> the score's metric on T, for a task whose score is not
    # a function of predictions and truth (generation: test_fd, in the model's judge's
    # features); ``predict`` maps the model's inputs to its answers, as ``Family.predict`` does.
    measure: Callable[[Callable, ModelSpec, Dataset, Split], float] | None = None
    # (spec, dataset, split) -> the inputs a model is measured on, for such a task.
    measured_on: Callable[[ModelSpec, Dataset, Split], np.ndarray] | None = None
