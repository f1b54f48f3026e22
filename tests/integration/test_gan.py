"""A GAN end to end on the shared local Ray: Ray Train workers with two DeepSpeed engines per
replica, the run in MLflow (both losses per round, test_fd against its floor, the quality report,
generated rows, a pyfunc that generates), and a GAN sweep that registers a champion by test_fd."""

from __future__ import annotations

import mlflow
import pandas as pd
import pytest

from tests.helpers import children

pytestmark = pytest.mark.integration

PENGUINS = {
    "data": {"source": "penguins", "label": "species"},
    "model": {"kind": "gan"},
    "optim": {"epochs": 30, "batch_size": 32},
    "strategy": {"eval_every": 5},
    "scaling": {"num_workers": 2, "cpus_per_worker": 0.5},
}


def test_a_gan_trains_on_ray_and_its_run_generates_rows(train, mlflow_client):
    code, summary = train("gan-penguins", **PENGUINS)
    assert code == 0 and summary is not None
    run = mlflow_client.get_run(summary.run_id)
    metrics = run.data.metrics
    assert metrics["test_fd"] < 10 * metrics["test_fd_real"]  # the floor: real against real
    assert 0 < metrics["test_quality"] <= 1 and metrics["test_label_accuracy"] > 0.4
    for loss in ("red/train_loss", "red/d_loss", "blue/train_loss", "blue/d_loss"):
        assert len(mlflow_client.get_metric_history(summary.run_id, loss)) > 5, loss
    artifacts = {a.path for a in mlflow_client.list_artifacts(summary.run_id)}
    assert {"generated_rows.csv", "quality.json", "preprocessing.json"} <= artifacts
    model = mlflow.pyfunc.load_model(summary.model_uri)
    asked = pd.DataFrame({"n": [2, 1], "label": ["Gentoo", "Adelie"], "seed": [4, 4]})
    rows = model.predict(asked)
    assert rows["species"].tolist() == ["Gentoo", "Gentoo", "Adelie"]
    assert {"island", "bill_length_mm", "sex"} <= set(rows.columns)
    pd.testing.assert_frame_equal(rows, model.predict(asked))  # the same seed, the same rows


def test_a_gan_sweep_registers_a_champion_by_test_fd(sweep, mlflow_client):
    space = {"optim.lr": {"loguniform": [5e-5, 3e-4]}, "model.d_lr": {"choice": [2e-4, 8e-4]}}
    code, summary = sweep(
        "gan-sweep",
        **{**PENGUINS, "optim": {"epochs": 10, "batch_size": 32}},
        sweep={"space": space, "num_samples": 2, "max_concurrent": 2, "scheduler": "fifo"},
    )
    assert code == 0 and summary is not None and summary.alias == "champion"
    champion = mlflow_client.get_model_version_by_alias("gan-sweep", "champion")
    assert str(champion.version) == summary.version
    trials = children(mlflow_client, summary.parent_run_id)
    assert len(trials) == 2 and all("model.d_lr" in t.data.params for t in trials)
    assert all("test_fd" in t.data.metrics for t in trials)
