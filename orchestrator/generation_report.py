"""The evaluation report of a generative model, logged to its run: as many rows as the test part T
holds, generated for T's classes (seed 0), against T's own rows.

- ``test_quality``, ``test_column_shapes``, ``test_column_pair_trends`` (SDMetrics' definitions,
  ``trainers.data.table_quality``), and ``quality.json`` with each column's shape score;
- ``generated_rows.csv``: the generated rows, with the source's columns;
- ``generated_grid.png`` for a table of pixels (a square number of number columns, such as the
  digits' 64): the rows drawn as images, a row of them per class.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from orchestrator.tracking import TrackedRun
from trainers.data.preprocessing import of_model
from trainers.data.table_quality import ks_complement, quality, tv_complement
from trainers.loop.plan import RunPlan
from trainers.spec import ModelSpec

GRID_PER_CLASS = 8
GRID_FILE = "generated_grid.png"


def generated_for(model, spec: ModelSpec, labels: list, seed: int = 0) -> pd.DataFrame:
    """Rows generated for each of ``labels`` (class values), as a user gets them."""
    from trainers.models import as_output, predict
    from trainers.tasks import input_schema

    requests = input_schema(spec).requested(len(labels), labels, seed)
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
    shapes = {
        column: ks_complement(real[column], generated[column])
        if column in numbers
        else tv_complement(real[column], generated[column])
        for column in real.columns
    }
    run.client.log_dict(run.run_id, {**scores, "column_shapes_by_column": shapes}, "quality.json")
    run.client.log_text(run.run_id, generated.to_csv(index=False), "generated_rows.csv")
    side = math.isqrt(len(numbers))
    if side >= 4 and side * side == len(numbers) == len(of_model(spec).columns):
        figure = _grid(model, spec, side)
        run.client.log_figure(run.run_id, figure, GRID_FILE)
        import matplotlib.pyplot as plt

        plt.close(figure)


def _grid(model, spec: ModelSpec, side: int):
    """``GRID_PER_CLASS`` generated rows of each class, drawn as ``side`` x ``side`` images."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    classes = list(spec.classes)
    labels = [c for c in classes for _ in range(GRID_PER_CLASS)]
    rows = generated_for(model, spec, labels, seed=1000)
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
