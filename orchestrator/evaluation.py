"""The evaluation report of a training's kept model on the test part T, logged to its run.

The test metrics of every run (``test_macro_f1``, ``test_roc_auc``, ``test_ece``; ``test_mae``,
``test_r2``) come from the family's objective in the workers, so sweep and comparison children
carry them too. This adds, on a ``redblue train`` run and on each finished sweep trial's run,
what needs the driver: for classification
MLflow's evaluation of the predictions (``mlflow.models.evaluate``: the confusion matrix plot, the
per-class precision / recall / F1 table, and weighted scores logged as ``test_*_score``), the
confusion matrix as JSON, and ROC, precision-recall and reliability figures
(``orchestrator.classifier_plots``); for regression a residual plot; for a forecaster a plot of its
forecasts over the test block (``forecast.png``; the baselines' metrics are logged with the
run's) and the mean absolute error at each step ahead, its and the baselines'
(``forecast_errors.json``). A run with ``strategy.clean`` also gets its ``label_issues.csv``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from orchestrator.classifier_plots import classifier_figures
from orchestrator.generation_report import log_generation
from orchestrator.tracking import TrackedRun
from trainers.loop.plan import RunPlan
from trainers.models import load_model, predict
from trainers.spec import LABEL_ISSUES_FILE

CONFUSION_FILE = "confusion_matrix.json"
RESIDUALS_FILE = "residuals.png"


def log_evaluation(run: TrackedRun, final_model_dir: Path, plan: RunPlan) -> None:
    """Predict T with the saved model and log the report to ``run``: by what it predicts
    (classes or values), then its task's own artifacts."""
    model, spec = load_model(final_model_dir)
    if plan.task.asks_requests:  # a generative model: rows generated for T's classes
        log_generation(run, model, spec, plan)
        return
    test, task = plan.split.test, plan.task
    features = task.input_schema(spec).rows(plan.dataset.raw_rows(test))
    predicted, probabilities = predict(model, spec, features)  # its own preprocessing of T
    labels = plan.dataset.labels[test]
    if spec.task == "classification":
        truth = np.asarray(spec.classes)[labels]
        _classification_report(run, truth, predicted, list(spec.classes))
        if probabilities is not None:
            for name, figure in classifier_figures(labels, probabilities, spec.classes).items():
                run.client.log_figure(run.run_id, figure, name)
                _close(figure)
    elif spec.task == "regression":
        _residual_plot(run, labels.astype(np.float64), np.asarray(predicted, np.float64))
    issues = final_model_dir.parent / LABEL_ISSUES_FILE  # strategy.clean's report
    if issues.exists():
        run.client.log_artifact(run.run_id, str(issues))
    for name, artifact in task.artifacts(plan.dataset, plan.split, spec, predicted).items():
        if isinstance(artifact, dict):
            run.client.log_dict(run.run_id, artifact, name)
        else:  # a matplotlib figure
            run.client.log_figure(run.run_id, artifact, name)
            _close(artifact)


# What MLflow's default classifier evaluator logs (as test_<name>) beside redblue's own test
# metrics: weighted averages and counts, kept in MLflow, left out of a model's summary.
MLFLOW_EVALUATOR_METRICS = frozenset(
    {"example_count", "accuracy_score", "recall_score", "precision_score", "f1_score"}
    | {"true_negatives", "false_positives", "false_negatives", "true_positives"}
)


def own_test_metrics(metrics: dict[str, float]) -> dict[str, float]:
    """The ``test_`` metrics of a run that redblue measured (not MLflow's evaluator's)."""
    return {
        name: value
        for name, value in metrics.items()
        if name.startswith("test_") and name[5:] not in MLFLOW_EVALUATOR_METRICS
    }


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


def _close(figure) -> None:
    import matplotlib.pyplot as plt

    plt.close(figure)
