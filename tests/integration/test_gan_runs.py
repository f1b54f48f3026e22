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
    drawn = [a.path for a in mlflow_client.list_artifacts(summary.run_id, "samples")]
    assert len(drawn) >= 2 and all(path.endswith(".csv") for path in drawn)  # each evaluation
    model = mlflow.pyfunc.load_model(summary.model_uri)
    asked = pd.DataFrame({"n": [2, 1], "label": ["Gentoo", "Adelie"], "seed": [4, 4]})
    rows = model.predict(asked)
    assert rows["species"].tolist() == ["Gentoo", "Gentoo", "Adelie"]
    assert {"island", "bill_length_mm", "sex"} <= set(rows.columns)
    pd.testing.assert_frame_equal(rows, model.predict(asked))  # the same seed, the same rows


def test_a_pbt_sweep_of_both_learning_rates_registers_a_champion(sweep, mlflow_client):
    """Population-based training of the generator's and the discriminator's learning rates (as
    Ray's PBT DCGAN does): a trial continues from the other's checkpoint with perturbed rates,
    and the best trial's model is registered as the champion, ranked by test_fd."""
    space = {"optim.lr": {"loguniform": [5e-5, 3e-4]}, "model.d_lr": {"loguniform": [2e-4, 1e-3]}}
    code, summary = sweep(
        "gan-pbt",
        **{**PENGUINS, "optim": {"epochs": 12, "batch_size": 32}, "strategy": {"eval_every": 1}},
        checkpoint={"every_rounds": 2, "keep": 1},
        sweep={"space": space, "num_samples": 2, "max_concurrent": 2, "scheduler": "pbt"},
    )
    assert code == 0 and summary is not None and summary.alias == "champion"
    champion = mlflow_client.get_model_version_by_alias("gan-pbt", "champion")
    assert str(champion.version) == summary.version
    trials = children(mlflow_client, summary.parent_run_id)
    assert len(trials) == 2 and all("test_fd" in t.data.metrics for t in trials)
    exploited = [t for t in trials if "redblue.pbt.exploits" in t.data.tags]
    assert exploited, [t.data.tags for t in trials]
    rates = [
        {m.value for m in mlflow_client.get_metric_history(t.info.run_id, "pbt/model.d_lr")}
        for t in exploited
    ]
    assert max(len(values) for values in rates) >= 2, rates  # the discriminator's, perturbed
