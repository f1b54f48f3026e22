"""Real Ray Train + DeepSpeed workers on the shared local Ray; real MLflow on SQLite."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tests.helpers import default_test_part

pytestmark = pytest.mark.integration


def trained_at(train, mlflow_client, zero_stage):
    """A red-blue run of the digits at ``zero_stage``, checked; returns its summary and tags."""
    code, summary = train(f"zero{zero_stage}", deepspeed={"zero_stage": zero_stage})
    assert code == 0
    assert summary.metrics["test_accuracy"] >= 0.9
    run = mlflow_client.get_run(summary.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["redblue.world_size"] == "2"
    assert run.data.tags["redblue.num_nodes"] == "1"  # the session Ray is one node
    for key in (
        "val_loss",
        "test_loss",
        "test_accuracy",
        "red/test_accuracy",
        "blue/test_accuracy",
        "red/holdout_loss",
        "fusion/divergence",
    ):
        assert key in run.data.metrics, key
    assert len(mlflow_client.get_metric_history(summary.run_id, "val_loss")) >= 10
    return summary, run.data.tags


@pytest.fixture(scope="module")
def auto_run(train, mlflow_client):
    """The default run: red-blue at deepspeed.zero_stage auto; (summary, tags)."""
    return trained_at(train, mlflow_client, "auto")


def test_zero_stage_auto_picks_0_for_a_small_model_and_trains_as_zero2_does(
    auto_run, train, mlflow_client
):
    """auto's ZeRO-0 (one all-reduce a step) computes what ZeRO-2 computes, on the same seed."""
    auto, tags = auto_run
    assert tags["redblue.zero_stage"] == "0"
    assert tags["redblue.zero_stage_reason"].startswith("auto: 0.")  # MB of training state
    zero2, tags = trained_at(train, mlflow_client, 2)
    assert tags["redblue.zero_stage"] == "2"
    for key in ("test_loss", "test_accuracy", "red/test_loss", "blue/test_loss"):
        assert auto.metrics[key] == pytest.approx(zero2.metrics[key], rel=1e-5), key


def test_under_zero3_the_result_is_the_fused_model(train, mlflow_client):
    """ZeRO-3 keeps small parameters gathered between steps: fusion must reach them."""
    code, summary = train(
        "zero3-fused",
        optim={"epochs": 3},
        deepspeed={"zero_stage": 3},
        strategy={"fuse_every": 0},
    )
    assert code == 0
    tags = mlflow_client.get_run(summary.run_id).data.tags
    assert (tags["redblue.zero_stage"], tags["redblue.zero_stage_reason"]) == ("3", "configured")
    metrics = summary.metrics
    assert metrics["test_loss"] != pytest.approx(metrics["red/test_loss"], abs=1e-6)
    assert metrics["test_loss"] != pytest.approx(metrics["blue/test_loss"], abs=1e-6)
    history = {
        key: [m.value for m in mlflow_client.get_metric_history(summary.run_id, key)]
        for key in ("val_loss", "red/holdout_loss")
    }
    rounds = len(history["red/holdout_loss"])
    assert rounds >= 3
    for fused, red in zip(history["val_loss"][:rounds], history["red/holdout_loss"], strict=True):
        assert fused != pytest.approx(red, abs=1e-6)
    # the logged model, loaded back, is the model that was tested
    logged = logged_model_test_loss(summary.model_uri)
    assert logged == pytest.approx(metrics["test_loss"], rel=1e-4)


def logged_model_test_loss(model_uri: str) -> float:
    """Cross-entropy of a logged model on the default test part."""
    import torch

    from orchestrator.tracking import fetch_final_model
    from trainers.families import family_of
    from trainers.models import load_model

    model, spec = load_model(fetch_final_model(model_uri))
    features, labels = default_test_part()
    with torch.no_grad():
        outputs = model(torch.as_tensor(features))
    objective = family_of(spec.kind).objective(spec, model, None)
    return float(objective.loss(outputs, torch.as_tensor(labels)))


def test_standard_strategy(train, mlflow_client):
    code, summary = train("standard", strategy={"kind": "standard"}, deepspeed={"zero_stage": 2})
    assert code == 0
    assert summary.metrics["test_accuracy"] >= 0.9
    run = mlflow_client.get_run(summary.run_id)
    assert run.data.tags["redblue.strategy"] == "standard"
    assert "train_loss" in run.data.metrics and "red/train_loss" not in run.data.metrics


def test_logged_model_predicts_like_the_fused_model(auto_run, mlflow_client, tmp_path):
    import mlflow
    import pandas as pd

    from orchestrator.config import RedblueConfig
    from trainers.loop.plan import plan_run
    from trainers.models import load_model, predict
    from trainers.spec import FINAL_MODEL_DIR

    summary, _ = auto_run
    fused, spec = load_model(f"{summary.checkpoint_path}/{FINAL_MODEL_DIR}")
    plan = plan_run(RedblueConfig())
    features = plan.dataset.features[plan.split.test]
    expected, _ = predict(fused, spec, features)

    for uri in (summary.model_uri, f"runs:/{summary.run_id}/model"):
        loaded = mlflow.pyfunc.load_model(uri)
        got = loaded.predict(pd.DataFrame(features, columns=spec.feature_names))
        assert np.array_equal(np.asarray(got), expected)
    accuracy = float(np.mean(expected == plan.dataset.labels[plan.split.test]))
    assert accuracy == pytest.approx(summary.metrics["test_accuracy"])

    artifacts = {a.path for a in mlflow_client.list_artifacts(summary.run_id)}
    assert {"config.yaml", "learning_curve.png"} <= artifacts
    params = mlflow_client.get_run(summary.run_id).data.params
    assert params["strategy.red_ratio"] == "0.5" and params["deepspeed.zero_stage"] == "auto"

    # the evaluation report of the kept model on T
    report = {"confusion_matrix.json", "test_confusion_matrix.png", "per_class_metrics.csv"}
    report |= {"roc_curve.png", "precision_recall_curve.png", "calibration.png"}
    assert report <= artifacts
    # the input example, the scoring server's request body, and the data's lineage
    example = mlflow.models.Model.load(summary.model_uri).load_input_example()
    assert np.array_equal(loaded.predict(example), expected[: len(example)])
    run = mlflow_client.get_run(summary.run_id)
    contexts = {
        next(t.value for t in i.tags if t.key == "mlflow.data.context"): i
        for i in run.inputs.dataset_inputs
    }  # beside it, MLflow's evaluation logs the predictions it scored ("evaluation")
    lineage = contexts["training"]
    assert lineage.dataset.name == "digits" and len(lineage.dataset.digest) == 16
    tags = {t.key: t.value for t in lineage.tags}
    assert int(tags["redblue.rows.test"]) == len(features)
    confusion = mlflow.artifacts.load_dict(f"runs:/{summary.run_id}/confusion_matrix.json")
    matrix = np.asarray(confusion["matrix"])
    assert confusion["labels"] == list(range(10)) and matrix.sum() == len(features)
    assert np.trace(matrix) / matrix.sum() == pytest.approx(summary.metrics["test_accuracy"])
    metrics = mlflow_client.get_run(summary.run_id).data.metrics
    assert metrics["test_accuracy_score"] == pytest.approx(summary.metrics["test_accuracy"])
    for key in ("test_macro_f1", "test_roc_auc", "test_ece", "test_f1_score"):
        assert 0 <= metrics[key] <= 1, key
    assert metrics["test_roc_auc"] > 0.9


def test_a_regression_run_reports_mae_r2_and_residuals(train, mlflow_client):
    code, summary = train(
        "diabetes-report",
        data={"source": "diabetes"},
        model={"kind": "linear"},
        strategy={"kind": "standard"},
        optim={"epochs": 20, "lr": 0.02, "batch_size": 32},
    )
    assert code == 0
    metrics = mlflow_client.get_run(summary.run_id).data.metrics
    assert 0.2 < metrics["test_r2"] < 1 and metrics["test_mae"] > 0
    assert metrics["test_mae"] ** 2 <= metrics["test_mse"]  # mean |e| squared <= mean e^2
    artifacts = {a.path for a in mlflow_client.list_artifacts(summary.run_id)}
    assert "residuals.png" in artifacts


def test_nan_loss_fails_the_run_and_keeps_the_last_good_checkpoint(train, mlflow_client):
    code, summary = train(
        "diverges",
        data={"source": "diabetes"},
        optim={
            "name": "sgd",
            "lr": 10,
            "warmup_steps": 40,
            "schedule": "constant",
            "grad_clip": 0.0,
        },
        strategy={"phase_steps": 2},
        checkpoint={"every_rounds": 1},
    )
    assert code == 1 and summary is None
    experiment = mlflow_client.get_experiment_by_name("diverges")
    (run,) = mlflow_client.search_runs([experiment.experiment_id])
    assert run.info.status == "FAILED"
    error = run.data.tags["redblue.error"]
    assert "NaN or infinite in round" in error
    checkpoint = error.split("last good checkpoint: ")[1]
    assert checkpoint != "(none)"
    import json
    from pathlib import Path

    state = json.loads((Path(checkpoint) / "loop_state.json").read_text())
    assert state["next_round"] >= 1


def test_red_blue_finds_wrong_labels_while_it_trains(train, mlflow_client, tmp_path, capsys):
    """strategy.clean prune on digits with 30% of P''s labels flipped: the flagged rows are
    mostly the flipped ones, and the run logs them with its metrics and prints the first five."""
    code, summary = train("clean", data={"label_noise": 0.3}, strategy={"clean": "prune"})
    assert code == 0
    metrics = summary.metrics
    assert metrics["label_issues/precision"] >= 0.7 and metrics["label_issues/recall"] >= 0.5
    run = mlflow_client.get_run(summary.run_id)
    assert run.data.tags["redblue.train_loss"].startswith("weighted: label issues at weight 0")
    assert run.data.metrics["label_issues/count"] == metrics["label_issues/count"]
    path = mlflow_client.download_artifacts(summary.run_id, "label_issues.csv", str(tmp_path))
    issues = pd.read_csv(path)
    assert len(issues) == metrics["label_issues/count"]
    assert set(issues.given_label) <= set(range(10)) and issues.row.is_unique
    printed = capsys.readouterr().out
    assert f"label issues: {len(issues)} row(s) flagged" in printed
    assert "the 5 most confident" in printed
