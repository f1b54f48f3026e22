"""The recurrent families on sequence data (the bundled digit rows, 3 to 8 steps): each kind
trains under DeepSpeed (ZeRO-2 and ZeRO-3, fp32 and bf16, both strategies), the logged pyfunc
model takes the long-format frame, and the LSTM is served over HTTP as sequences."""

from __future__ import annotations

import httpx
import numpy as np
import pytest

pytestmark = pytest.mark.integration

KEY = "itest-Sq3Rn8Lt5Gr2Uw7Kb4Xm"
BASE = {
    "data": {"kind": "sequence", "source": "digits_rows"},
    "optim": {"epochs": 6, "lr": 0.01, "batch_size": 64},
    "strategy": {"phase_steps": 5},
    "scaling": {"num_workers": 2, "cpus_per_worker": 0.5},
    "checkpoint": {"every_rounds": 4, "keep": 1},
}
RUNS = {
    "lstm": ({"kind": "lstm", "hidden": 32}, "red_blue", {"zero_stage": 3}),
    "gru": ({"kind": "gru", "hidden": 32, "bidirectional": True}, "standard", {"zero_stage": 2}),
    "rnn": ({"kind": "rnn", "hidden": 32}, "red_blue", {"zero_stage": 2, "precision": "bf16"}),
}


@pytest.fixture(scope="module")
def trained(train):
    runs = {}
    for kind, (model, strategy, deepspeed) in RUNS.items():
        sections = {**BASE, "model": model, "strategy": {**BASE["strategy"], "kind": strategy}}
        runs[kind] = train(f"seq-{kind}", **sections, deepspeed=deepspeed)
    return runs


@pytest.fixture(scope="module")
def long_frame():
    from trainers.sequences import digits_rows

    frame = digits_rows()
    return frame[frame["image"] < 60]


def test_each_recurrent_kind_learns_the_digit_rows(trained, mlflow_client):
    for kind, (code, summary) in trained.items():
        assert code == 0, kind
        assert summary.metrics["test_accuracy"] >= 0.6, (kind, summary.metrics)
        params = mlflow_client.get_run(summary.run_id).data.params
        assert params["model.kind"] == kind and params["data.kind"] == "sequence"


def test_the_logged_model_takes_the_long_format_frame(trained, long_frame):
    import mlflow

    _, summary = trained["lstm"]
    predicted = mlflow.pyfunc.load_model(summary.model_uri).predict(long_frame)
    truth = long_frame.groupby("image")["digit"].first().to_numpy()
    assert len(predicted) == 60 and np.mean(np.asarray(predicted) == truth) >= 0.5


def test_sequences_of_any_length_are_served(trained, serve_port):
    from ray import serve

    from orchestrator.serving.application import DeployArgs
    from orchestrator.serving.model_source import parse_model_uri, resolve_bundle
    from orchestrator.serving.rollout import start
    from serve_apps.guard import key_digest
    from serve_apps.settings import ServeSection
    from trainers.families import family_of
    from trainers.models import predict

    _, summary = trained["lstm"]
    settings = ServeSection(port=serve_port, num_replicas=1, cpus_per_replica=0.25)
    args = DeployArgs(
        model=summary.model_uri,
        name="seq-lstm",
        serve=settings,
        key_digests=[key_digest(KEY)],
        audit_log=None,
    )
    deployment = start(args, resolve_bundle(parse_model_uri(summary.model_uri)), None)
    try:
        rng = np.random.default_rng(0)
        sequences = [rng.uniform(0, 16, size=(n, 8)).round(1).tolist() for n in (3, 8, 5)]
        with httpx.Client(headers={"Authorization": f"Bearer {KEY}"}, timeout=30) as client:
            answer = client.post(deployment.url + "/v1/predict", json={"sequences": sequences})
            too_long = client.post(
                deployment.url + "/v1/predict", json={"sequences": [[[0.0] * 8] * 9]}
            )
        model, spec = deployment.bundle.load()
        expected, probabilities = predict(
            model, spec, family_of(spec.kind).input_schema(spec).rows(sequences)
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["predictions"] == expected.tolist()
        np.testing.assert_allclose(answer.json()["probabilities"], probabilities, rtol=1e-5)
        assert too_long.status_code == 422 and "at most 8" in too_long.json()["message"]
    finally:
        serve.delete("seq-lstm")


def test_a_recurrent_sweep_under_zero3_registers_a_champion(sweep, mlflow_client):
    from orchestrator.tracking import fetch_final_model
    from trainers.models import load_model

    code, summary = sweep(
        "seq-sweep",
        **{**BASE, "optim": {**BASE["optim"], "epochs": 3}},
        model={"kind": "gru", "hidden": 16},
        deepspeed={"zero_stage": 3},
        sweep={
            "space": {"optim.lr": {"loguniform": [0.005, 0.02]}},
            "num_samples": 2,
            "max_concurrent": 2,
            "scheduler": "fifo",
        },
    )
    assert code == 0 and summary.best is not None
    best = mlflow_client.get_run(summary.best.run_id)
    assert best.data.params["model.kind"] == "gru" and "test_accuracy" in best.data.metrics
    champion = mlflow_client.get_model_version_by_alias("seq-sweep", "champion")
    _, spec = load_model(fetch_final_model(f"models:/seq-sweep/{champion.version}"))
    assert spec.kind == "gru" and "sequence" in spec.preprocessing
