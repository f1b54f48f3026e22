"""Generating a table's rows (``model.kind: gan`` on ``data.kind: table``): the table is read,
split and encoded as for classification (``trainers.tasks.table``), and the judge that measures
generated rows is fitted on P' (``trainers.data.judge``). A model takes requests for rows
(``n``, ``label``, ``seed``) and answers rows of the source's columns; it is ranked by
``test_fd``, lower is better."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

from trainers.config import RunSettings
from trainers.data.generation_input import GenerationInput, plain
from trainers.data.judge import GENERATION, JUDGE_WIDTH, Generation, fit_generation
from trainers.data.preprocessing import of_model
from trainers.data.sources import BUNDLED_LABELS
from trainers.data.splits import split_samples
from trainers.data.tables import encode, load_table
from trainers.dataset import Dataset, Split
from trainers.errors import DataError
from trainers.spec import ModelSpec, ScoreRule
from trainers.tasks import table
from trainers.tasks.base import CheckInputs, DataReport, PreparedData, Task

SCORE = ScoreRule("test_fd", higher_is_better=False)


def prepare(cfg: RunSettings) -> PreparedData:
    refuse_settings(cfg)
    loaded = load_table(cfg.data)
    if loaded.task != "classification":
        raise DataError(
            f"model.kind gan generates rows of each class of a label: data.label "
            f"{cfg.data.label or BUNDLED_LABELS.get(cfg.data.source)!r} is {loaded.task}; "
            "choose a class column as data.label"
        )
    split = split_samples(loaded, cfg)
    dataset = encode(loaded, split.train)
    fitted = dataset.preprocessing
    assert fitted is not None
    if fitted.embedded:
        widest = max(fitted.embedded, key=lambda column: len(column.categories))
        raise DataError(
            f"model.kind gan generates categories one-hot: column {widest.name!r} has "
            f"{len(widest.categories)} categories, over data.max_one_hot; set data.max_one_hot "
            f"to at least {len(widest.categories)}"
        )
    pool = split.train
    label = str(cfg.data.label or BUNDLED_LABELS.get(cfg.data.source))
    numbers = [c.name for c in fitted.columns if c.type == "number"]
    raw = loaded.frame.iloc[pool][numbers]
    whole = [name for name in numbers if (raw[name].dropna() % 1 == 0).all()]
    generation = fit_generation(
        dataset.features[pool], dataset.labels[pool], len(dataset.classes), label, whole, cfg.seed
    )
    spec = table.table_spec(cfg, dataset, pool)
    spec = dataclasses.replace(
        spec,
        task="generation",
        preprocessing={**spec.preprocessing, GENERATION: generation.to_dict()},
    )
    return PreparedData(dataset, split, spec)


def refuse_settings(cfg: RunSettings) -> None:
    """What a GAN run cannot do, named before Ray starts."""
    if cfg.strategy.clean != "off":
        raise DataError(
            "strategy.clean finds a classifier's wrong labels; model.kind gan has no classifier "
            "to ask: set strategy.clean: off"
        )
    if cfg.optim.class_weights != "none":
        raise DataError("optim.class_weights weighs a classifier's loss; model.kind gan has none")
    if cfg.model.model_dump()["loss"] == "wgan_gp" and cfg.deepspeed.zero_stage == 3:
        raise DataError(
            "model.loss wgan_gp backpropagates twice through the discriminator (its gradient "
            "penalty), which DeepSpeed ZeRO-3's partitioned parameters do not survive past the "
            "first discriminator step: set deepspeed.zero_stage to 0, 1 or 2, or model.loss to "
            "hinge or bce"
        )
    if cfg.deepspeed.precision == "fp16":
        raise DataError(
            "model.kind gan trains in deepspeed.precision fp32 or bf16: fp16's loss scaling is "
            "kept per engine, and a GAN's generator loss runs through the discriminator's"
        )


def input_schema(spec: ModelSpec) -> GenerationInput:
    stored = Generation.from_dict(spec.preprocessing[GENERATION])
    return GenerationInput(
        of_model(spec), tuple(spec.classes), tuple(stored.priors), stored.label, stored.whole
    )


def example_input(spec: ModelSpec, count: int) -> list[dict[str, Any]]:
    """One row of each class in turn."""
    classes = list(spec.classes)
    return [{"n": 1, "label": plain(classes[i % len(classes)]), "seed": i} for i in range(count)]


def check_inputs(spec: ModelSpec, source: str | None, count: int) -> CheckInputs:
    """``deploy --check``: the classes, one row of each."""
    return CheckInputs([plain(c) for c in spec.classes])


def describe(dataset: Dataset, split: Split) -> DataReport:
    report = table.describe(dataset, split)
    line = (
        f"judge: an MLP of {JUDGE_WIDTH} hidden units fitted on the training pool; test_fd is "
        "measured in its features"
    )
    return dataclasses.replace(report, lines=[*report.lines, line])


def answer(schema: Any, generated: np.ndarray) -> Any:
    assert isinstance(schema, GenerationInput)
    return schema.answer(generated)


def test_requests(spec: ModelSpec, dataset: Dataset, split: Split) -> np.ndarray:
    """A row asked for each row of T, of its class (seed 0): what a model is measured on."""
    requests = input_schema(spec).requested(len(split.test), None, 0)
    requests[:, 0] = dataset.labels[split.test]
    return requests


def measure(predict_rows: Callable, spec: ModelSpec, dataset: Dataset, split: Split) -> float:
    """``test_fd`` of a model (``predict_rows``: its weights in torch, or its exported graph) on
    T: its rows generated for T's classes (seed 0) against T's rows, in the features of the
    model's own judge (comparable between models whose judges are the same: the same data,
    split and seed)."""
    import torch

    from trainers.families.gan import adversarial
    from trainers.families.gan_objective import frechet_distance, moments

    real = of_model(spec).transform(dataset.raw_rows(split.test))
    generated, _ = predict_rows(test_requests(spec, dataset, split))
    judge = adversarial(spec).judge
    sums = {}
    for name, rows in (("real", real), ("fake", generated[:, :-1])):
        features = judge.features(torch.as_tensor(rows, dtype=torch.float32)).double().numpy()
        sums.update(moments(name, features))
    return frechet_distance(sums, "real", "fake")


TASK = Task(
    kind="generation",
    prepare=prepare,
    input_schema=input_schema,
    example_input=example_input,
    check_inputs=check_inputs,
    describe=describe,
    answer=answer,
    score=lambda spec: SCORE,
    batch_prediction=False,
    asks_requests=True,
    measure=measure,
    measured_on=test_requests,
)
