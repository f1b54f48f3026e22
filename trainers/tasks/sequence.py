"""Classification and regression of sequences (``data.kind: sequence``): a long-format table,
one row per (sequence, step), padded into samples (``trainers.data.sequences``) and split by
sequence; a model takes sequences of steps."""

from __future__ import annotations

from dataclasses import asdict

import numpy as np

from trainers.config import DataConfig, RunSettings
from trainers.data.sequences import BUNDLED_COLUMNS, SequenceInput, prepare_sequences
from trainers.data.sources import read_table
from trainers.data.splits import split_samples
from trainers.dataset import Dataset, Split
from trainers.spec import ModelSpec
from trainers.tasks.base import CheckInputs, DataReport, PreparedData, Task, model_spec


def prepare(cfg: RunSettings) -> PreparedData:
    dataset = prepare_sequences(read_table(cfg.data.source), cfg.data)
    split = split_samples(dataset, cfg)
    schema = dataset.schema
    assert isinstance(schema, SequenceInput)
    spec = model_spec(cfg, dataset, schema.width, preprocessing={"sequence": asdict(schema)})
    return PreparedData(dataset, split, spec)


def example_input(spec: ModelSpec, count: int) -> list:
    """``count`` sequences of two steps of zeros (the features' scale is the model's own)."""
    return [[[0.0] * spec.in_features] * 2 for _ in range(count)]


def check_inputs(spec: ModelSpec, source: str | None, count: int) -> CheckInputs:
    """The first sequences of the bundled data set and their labels; otherwise zeros."""
    if source not in BUNDLED_COLUMNS:
        return CheckInputs(example_input(spec, count))
    dataset = prepare_sequences(read_table(source), DataConfig(kind="sequence", source=source))
    sequences = [steps[steps[:, -1] > 0][:, :-1].tolist() for steps in dataset.features[:count]]
    labels = dataset.labels[:count]
    return CheckInputs(sequences, np.asarray(dataset.classes)[labels].tolist())


def describe(dataset: Dataset, split: Split) -> DataReport:
    """Nothing beyond the run's params: a sequence's features are numbers as they are."""
    return DataReport()


TASK = Task(
    kind="sequence",
    prepare=prepare,
    input_schema=SequenceInput.of_model,
    example_input=example_input,
    check_inputs=check_inputs,
    describe=describe,
    batch_prediction=False,  # a sequence spans rows that Ray Data may hand to different batches
)
