"""The tasks, by ``data.kind``. Adding one: its module here, a line below, its arm of
``DataConfig.kind`` (``trainers.config``) and its request in ``serve_apps/requests/``.

Each task module declares everything about its kind of data in one place
(``trainers.tasks.base.Task``); the plan, CLI, evaluation, registry, pyfunc, serving and
``deploy --check`` ask it. This registry and the config's ``data.kind`` are the only places
that know every kind.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from trainers.dataset import InputSchema
from trainers.families import family_of
from trainers.spec import ModelSpec
from trainers.tasks import generation, sequence, series, table
from trainers.tasks.base import Task

TASKS: dict[str, Task] = {
    task.kind: task for task in (table.TASK, sequence.TASK, series.TASK, generation.TASK)
}


def task_of(kind: str) -> Task:
    """The registered task of ``data.kind`` (or a family's own, ``generation``); a ValueError
    names the known ones otherwise."""
    try:
        return TASKS[kind]
    except KeyError:
        raise ValueError(f"unknown data kind {kind!r}; known: {sorted(TASKS)}") from None


def task_for(spec: ModelSpec) -> Task:
    """The task a model was trained on: the kind whose entry its stored preprocessing holds
    (``sequence``, ``series``, ``generation``), else the first data kind its family takes."""
    stored = [kind for kind in TASKS if kind in spec.preprocessing]
    return TASKS[stored[0] if stored else family_of(spec.kind).data_kinds[0]]


def input_schema(spec: ModelSpec) -> InputSchema:
    """What a trained model takes (its task's input schema)."""
    return task_for(spec).input_schema(spec)


def as_output(spec: ModelSpec, predictions: np.ndarray) -> Any:
    """What a model answers a user (the pyfunc model's output): its predictions, or a
    forecaster's as a frame of ``step`` and one column per target."""
    task = task_for(spec)
    return task.answer(task.input_schema(spec), predictions)
