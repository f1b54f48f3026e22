"""The evaluation report of a training's kept model on the test part T, logged to its run.

The test metrics of every run (``test_macro_f1``, ``test_roc_auc``, ``test_ece``; ``test_mae``,
``test_r2``) come from the family's objective in the workers, so sweep and comparison children
carry them too. This adds, on a ``redblue train`` run and on each finished sweep trial's run,
what needs the driver: for classification
MLflow's evaluation of the predictions (``mlflow.models.evaluate``: the confusion matrix plot, the
per-class precision / recall / F1 table, and weighted scores logged as ``test_*_score``) and the
confusion matrix as JSON; for regression a residual plot; for a forecaster a plot of its
forecasts over the test block (``forecast.png``; the baselines' metrics are logged with the
run's) and the mean absolute error at each step ahead, its and the baselines'
(``forecast_errors.json``).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from orchestrator.tracking import TrackedRun
from trainers.families import family_of
from trainers.forecast_scores import baseline_forecasts, errors_by_step
from trainers.models import load_model, predict
from trainers.plan import RunPlan

CONFUSION_FILE = "confusion_matrix.json"
RESIDUALS_FILE = "residuals.png"
FORECAST_FILE = "forecast.png"
FORECAST_ERRORS_FILE = "forecast_errors.json"


def log_evaluation(run: TrackedRun, final_model_dir: Path, plan: RunPlan) -> None:
    """Predict T with the saved model and log the report to ``run``."""
    model, spec = load_model(final_model_dir)
    test = plan.split.test
    features = family_of(spec.kind).input_schema(spec).rows(plan.dataset.raw_rows(test))
    predicted, _ = predict(model, spec, features)  # the model's own preprocessing of T
    labels = plan.dataset.labels[test]
    if spec.task == "forecast":
        _forecast_plot(run, plan, np.asarray(predicted, np.float64))
        _errors_by_step(run, plan, spec, np.asarray(predicted, np.float64))
    elif spec.task == "classification":
        truth = np.asarray(spec.classes)[labels]
        _classification_report(run, truth, predicted, list(spec.classes))
    else:
        _residual_plot(run, labels.astype(np.float64), np.asarray(predicted, np.float64))


def _classification_report(run: TrackedRun, truth, predicted, classes: list) -> None:
    import mlflow
    from sklearn.metrics import confusion_matrix

    frame = pd.DataFrame({"target": truth, "prediction": predicted})
    logging.getLogger("mlflow.models.evaluation").setLevel(logging.ERROR)
    with run.active():
        mlflow.models.evaluate(
            data=frame,
            predictions="prediction",
            targets="target",
            model_type="classifier",
            evaluators=["default"],
            evaluator_config={
                "default": {
                    "label_list": classes,
                    "metric_prefix": "test_",
                    "log_model_explainability": False,
                }
            },
        )
    matrix = confusion_matrix(truth, predicted, labels=classes)
    run.client.log_dict(
        run.run_id,
        {
            "labels": [c.item() if hasattr(c, "item") else c for c in classes],
            "rows": "true class",
            "columns": "predicted class",
            "matrix": matrix.tolist(),
        },
        CONFUSION_FILE,
    )


def _residual_plot(run: TrackedRun, truth: np.ndarray, predicted: np.ndarray) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(5, 4))
    axis.scatter(predicted, truth - predicted, s=10, alpha=0.6)
    axis.axhline(0.0, color="C3", linewidth=1)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true - predicted")
    axis.set_title("residuals on the test part T")
    figure.tight_layout()
    run.client.log_figure(run.run_id, figure, RESIDUALS_FILE)
    plt.close(figure)


def _forecast_plot(run: TrackedRun, plan: RunPlan, predicted: np.ndarray) -> None:
    """The first target over the test block, and the forecasts of every ``horizon``-th test
    window (so they tile the block without overlapping)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    schema, raw = plan.dataset.series, plan.dataset.raw
    assert schema is not None and raw is not None
    target, starts = schema.targets[0], plan.split.test
    times = raw[schema.time_column]
    shown = slice(int(starts[0]), int(starts[-1]) + schema.window + schema.horizon)
    figure, axis = plt.subplots(figsize=(7, 4))
    axis.plot(times[shown], raw[target][shown], color="black", linewidth=1, label=target)
    for position in range(0, len(starts), schema.horizon):
        first = int(starts[position]) + schema.window
        steps = times[first : first + schema.horizon]
        label = "forecast" if position == 0 else None
        axis.plot(steps, predicted[position, :, 0], color="C1", linewidth=1.5, label=label)
    axis.set_title(f"{schema.horizon}-step forecasts over the test block")
    axis.legend()
    figure.autofmt_xdate()
    figure.tight_layout()
    run.client.log_figure(run.run_id, figure, FORECAST_FILE)
    plt.close(figure)


def _errors_by_step(run: TrackedRun, plan: RunPlan, spec, predicted: np.ndarray) -> None:
    """The model's and the baselines' MAE at each step ahead, on the same test windows."""
    schema = plan.dataset.series
    assert schema is not None
    test = plan.split.test
    truth = plan.dataset.labels[test].astype(np.float64)
    windows = plan.dataset.features[test].astype(np.float64)
    forecasts = baseline_forecasts(
        windows, schema.horizon, schema.target_index, spec.preprocessing.get("season")
    )
    errors = errors_by_step({"model": predicted, **forecasts}, truth)
    run.client.log_dict(run.run_id, errors, FORECAST_ERRORS_FILE)
