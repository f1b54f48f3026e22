"""The evaluation report of a generative model, logged to its run: as many rows as the test part T
holds, generated for T's classes (seed 0), against T's own rows.

- ``test_quality``, ``test_column_shapes``, ``test_column_pair_trends`` (SDMetrics' definitions,
  ``trainers.data.table_quality``), and ``quality.json`` with each column's shape score;
- ``generated_rows.csv``: the generated rows, with the source's columns;
- ``generated_grid.png`` for a table of pixels (a square number of number columns, such as the
  digits' 64): the rows drawn as images, a row of them per class.

At each evaluation of ``redblue train`` the rows the model draws (its objective's ``samples``)
go under ``samples/``: such a grid, or a CSV for other tables.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from orchestrator.tracking import TrackedRun
from trainers.data.preprocessing import of_model
from trainers.data.table_quality import column_shapes, quality
from trainers.loop.plan import RunPlan
from trainers.spec import ModelSpec

GRID_PER_CLASS = 8
GRID_FILE = "generated_grid.png"


def generated_for(model, spec: ModelSpec, labels: list, seed: int = 0) -> pd.DataFrame:
    """Rows generated for each of ``labels`` (class values), as a user gets them."""
    from trainers.data.generation_input import GenerationInput
    from trainers.models import predict
    from trainers.tasks import as_output, input_schema

    schema = input_schema(spec)
    assert isinstance(schema, GenerationInput)
    requests = schema.requested(len(labels), labels, seed)
    generated, _ = predict(model, spec, requests)
    return as_output(spec, generated)


def log_generation(run: TrackedRun, model, spec: ModelSpec, plan: RunPlan) -> None:
    test = plan.split.test
    real = plan.dataset.raw_rows(test)
    assert isinstance(real, pd.DataFrame)
    label = spec.preprocessing["generation"]["label"]
    classes = np.asarray(spec.classes)
    real = real[list(of_model(spec).names)].assign(**{label: classes[plan.dataset.labels[test]]})
    generated = generated_for(model, spec, real[label].tolist())
    numbers = [c.name for c in of_model(spec).columns if c.type == "number"]
    scores = quality(real, generated, numbers)
    run.log_metrics({f"test_{name}": value for name, value in scores.items()})
    shapes = column_shapes(real, generated, numbers)
    run.client.log_dict(run.run_id, {**scores, "column_shapes_by_column": shapes}, "quality.json")
    run.client.log_text(run.run_id, generated.to_csv(index=False), "generated_rows.csv")
    if pixels_side(spec):
        labels = [c for c in spec.classes for _ in range(GRID_PER_CLASS)]
        _log_grid(run, spec, generated_for(model, spec, labels, seed=1000), GRID_FILE)


def log_samples(run: TrackedRun, spec: ModelSpec, round_number: int, rows: np.ndarray) -> None:
    """The rows a generative model drew at an evaluation (``samples`` of its objective): a grid
    of images for a table of pixels, else a CSV, under ``samples/``."""
    from trainers.tasks import as_output

    generated = as_output(spec, rows)
    name = f"samples/round_{round_number:05d}"
    if pixels_side(spec):
        _log_grid(run, spec, generated, f"{name}.png")
    else:
        run.client.log_text(run.run_id, generated.to_csv(index=False), f"{name}.csv")


def pixels_side(spec: ModelSpec) -> int:
    """The side of the images a table of pixels holds (a square number, 16 or more, of number
    columns and nothing else), else 0."""
    fitted = of_model(spec)
    side = math.isqrt(len(fitted.columns))
    square = side >= 4 and side * side == len(fitted.columns)
    return side if square and all(c.type == "number" for c in fitted.columns) else 0


def _log_grid(run: TrackedRun, spec: ModelSpec, rows: pd.DataFrame, name: str) -> None:
    import matplotlib.pyplot as plt

    figure = _grid(spec, rows)
    run.client.log_figure(run.run_id, figure, name)
    plt.close(figure)


def _grid(spec: ModelSpec, rows: pd.DataFrame):
    """Generated ``rows`` (``GRID_PER_CLASS`` of each class, in class order) as images."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    classes, side = list(spec.classes), pixels_side(spec)
    labels = rows.iloc[:, -1].tolist()
    pixels = rows[list(of_model(spec).names)].to_numpy(np.float64)
    figure, axes = plt.subplots(
        len(classes), GRID_PER_CLASS, figsize=(GRID_PER_CLASS * 0.8, len(classes) * 0.8)
    )
    axes = np.atleast_2d(axes)
    for index, axis in enumerate(axes.flat):
        axis.imshow(pixels[index].reshape(side, side), cmap="gray_r")
        axis.set_xticks([])
        axis.set_yticks([])
        if index % GRID_PER_CLASS == 0:
            axis.set_ylabel(str(labels[index]), rotation=0, labelpad=12)
    figure.suptitle("generated rows, one line per class")
    figure.tight_layout()
    return figure
