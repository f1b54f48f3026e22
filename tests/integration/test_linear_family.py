"""The second model family, ``model.kind: linear``, through every command's path: trained with
both strategies under DeepSpeed, swept, logged and registered in MLflow, served over HTTP."""

from __future__ import annotations

import httpx
import numpy as np
import pytest

pytestmark = pytest.mark.integration

KEY = "itest-Lm4Qw8Zr2Tx6Vb9Nc3Hk"
LINEAR = {"kind": "linear", "l2": 1e-4}
SMALL = {
    "model": LINEAR,
    "optim": {"epochs": 4, "lr": 0.01},
    "deepspeed": {"zero_stage": 2},
    "scaling": {"num_workers": 1, "cpus_per_worker": 1},
    "checkpoint": {"every_rounds": 2, "keep": 1},
}


@pytest.fixture(scope="module")
def linear_sweep(sweep):
    space = {"optim.lr": {"loguniform": [0.005, 0.05]}}
    return sweep(
        "linear-digits",
        **SMALL,
        sweep={"space": space, "num_samples": 2, "max_concurrent": 2, "scheduler": "fifo"},
    )


def test_standard_training_of_a_linear_model(train, mlflow_client):
    code, summary = train("linear-standard", **{**SMALL, "strategy": {"kind": "standard"}})
    assert code == 0
    assert summary.metrics["test_accuracy"] >= 0.85
    run = mlflow_client.get_run(summary.run_id)
    assert run.data.params["model.kind"] == "linear"
    assert run.data.params["model.l2"] == "0.0001"
    assert "model.hidden" not in run.data.params


def test_a_linear_sweep_trains_red_blue_logs_and_registers_a_champion(linear_sweep, mlflow_client):
    from orchestrator.tracking import fetch_final_model
    from trainers.models import load_model

    code, summary = linear_sweep
    assert code == 0 and summary.best is not None
    best = mlflow_client.get_run(summary.best.run_id)
    assert best.data.params["strategy.kind"] == "red_blue"
    assert best.data.metrics["test_accuracy"] >= 0.85
    assert {"red/test_accuracy", "fusion/divergence"} <= set(best.data.metrics)
    champion = mlflow_client.get_model_version_by_alias("linear-digits", "champion")
    model, spec = load_model(fetch_final_model(f"models:/linear-digits/{champion.version}"))
    assert spec.kind == "linear" and spec.options["l2"] == pytest.approx(1e-4)
    assert [name for name, _ in model.named_parameters()] == ["net.0.weight", "net.0.bias"]


def test_the_linear_champion_is_served_like_the_mlp(linear_sweep, serve_port, workspace):
    from ray import serve

    from orchestrator.serving.application import DeployArgs
    from orchestrator.serving.model_source import parse_model_uri, resolve_bundle
    from orchestrator.serving.rollout import start
    from serve_apps.guard import key_digest
    from serve_apps.settings import ServeSection
    from trainers.config import DataConfig
    from trainers.data.tables import load_dataset
    from trainers.models import predict

    uri = parse_model_uri("models:/linear-digits@champion")
    settings = ServeSection(port=serve_port, num_replicas=1, cpus_per_replica=0.25)
    args = DeployArgs(
        model="models:/linear-digits@champion",
        name="linear-digits",
        serve=settings,
        key_digests=[key_digest(KEY)],
        audit_log=None,
    )
    deployment = start(args, resolve_bundle(uri), None)
    try:
        rows = load_dataset(DataConfig(source="digits")).features[:16]
        with httpx.Client(headers={"Authorization": f"Bearer {KEY}"}, timeout=30) as client:
            answer = client.post(deployment.url + "/v1/predict", json={"inputs": rows.tolist()})
            refused = httpx.post(deployment.url + "/v1/predict", json={"inputs": [[1.0]]})
            narrow = client.post(deployment.url + "/v1/predict", json={"inputs": [[1.0, 2.0]]})
        model, spec = deployment.bundle.load()
        labels, probabilities = predict(model, spec, rows)
        assert answer.status_code == 200, answer.text
        assert answer.json()["predictions"] == labels.tolist()
        np.testing.assert_allclose(answer.json()["probabilities"], probabilities, rtol=1e-5)
        assert refused.status_code == 401
        assert narrow.status_code == 422 and "64" in narrow.text
    finally:
        serve.delete("linear-digits")
