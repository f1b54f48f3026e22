"""The recurrent families through Ray Train, MLflow and Serve: an LSTM (ZeRO-3) and an RNN
(bf16) classify the bundled digit rows (3 to 8 steps) and an LSTM (ZeRO-3) forecasts the co2
series, all red-blue. The logged pyfunc models take the long-format frame and the series frame;
Serve answers sequences and histories; a PBT sweep of forecasters of every kind under ZeRO-3
registers a champion. (Every kind x strategy x ZeRO stage, with exact resume, runs on DeepSpeed
engines in test_recurrent_engines.py.)"""

from __future__ import annotations

import httpx
import numpy as np
import pytest

from trainers.tasks import input_schema

pytestmark = pytest.mark.integration

KEY = "itest-Sq3Rn8Lt5Gr2Uw7Kb4Xm"
BASE = {
    "data": {"kind": "sequence", "source": "digits_rows"},
    "optim": {"epochs": 6, "lr": 0.01, "batch_size": 64},
    "strategy": {"phase_steps": 5},
    "scaling": {"num_workers": 1, "cpus_per_worker": 1},
    "checkpoint": {"every_rounds": 4, "keep": 1},
}
RUNS = {
    "lstm": ({"kind": "lstm", "hidden": 32}, {"zero_stage": 3}),
    "rnn": ({"kind": "rnn", "hidden": 32}, {"zero_stage": 2, "precision": "bf16"}),
}
SERIES = {
    "data": {"kind": "series", "source": "co2", "window": 24, "horizon": 12, "season": 12},
    "optim": {"epochs": 30, "lr": 0.003, "batch_size": 32, "grad_clip": 1.0},
    "strategy": {"phase_steps": 10, "val_fraction": 0.15},
    "scaling": {"num_workers": 1, "cpus_per_worker": 1},
    "checkpoint": {"every_rounds": 5, "keep": 1},
}


@pytest.fixture(scope="module")
def trained(train):
    runs = {}
    for kind, (model, deepspeed) in RUNS.items():
        runs[kind] = train(f"seq-{kind}", **BASE, model=model, deepspeed=deepspeed)
    return runs


@pytest.fixture(scope="module")
def forecaster(train):
    return train(
        "co2-lstm", **SERIES, model={"kind": "lstm", "hidden": 32}, deepspeed={"zero_stage": 3}
    )


@pytest.fixture(scope="module")
def co2():
    from trainers.data.sources import read_table

    return read_table("co2")


@pytest.fixture(scope="module")
def long_frame():
    from trainers.data.bundled import digits_rows

    frame = digits_rows()
    return frame[frame["image"] < 60]


def test_each_recurrent_kind_learns_the_digit_rows(trained, mlflow_client):
    for kind, (code, summary) in trained.items():
        assert code == 0, kind
        assert summary.metrics["test_accuracy"] >= 0.6, (kind, summary.metrics)
        params = mlflow_client.get_run(summary.run_id).data.params
        assert params["model.kind"] == kind and params["data.kind"] == "sequence"


def test_the_forecaster_beats_both_baselines_on_the_same_test_block(forecaster, mlflow_client):
    import mlflow

    code, summary = forecaster
    assert code == 0
    run = mlflow_client.get_run(summary.run_id)
    metrics, params = run.data.metrics, run.data.params
    for baseline in ("naive", "seasonal_naive"):
        assert metrics["test_mase"] < metrics[f"baseline/{baseline}_mase"], metrics
        for name in ("mae", "rmse", "smape"):
            assert f"baseline/{baseline}_{name}" in metrics and f"test_{name}" in metrics
    assert params["series.targets"] == "co2" and params["series.windows"] == "491"
    artifacts = {a.path for a in mlflow_client.list_artifacts(summary.run_id)}
    assert {"forecast.png", "forecast_errors.json"} <= artifacts
    errors = mlflow.artifacts.load_dict(f"runs:/{summary.run_id}/forecast_errors.json")
    assert errors["step"] == list(range(1, 13))
    assert np.mean(errors["mae"]["model"]) == pytest.approx(metrics["test_mae"], rel=1e-4)
    assert set(errors["mae"]) == {"model", "naive", "seasonal_naive"}


def test_the_logged_forecaster_takes_the_series_frame(forecaster, co2):
    import mlflow

    from orchestrator.tracking import fetch_final_model
    from trainers.models import load_model, predict

    _, summary = forecaster
    months = co2.iloc[:100].sample(frac=1.0, random_state=1)  # in any order
    answer = mlflow.pyfunc.load_model(summary.model_uri).predict(months)
    model, spec = load_model(fetch_final_model(summary.model_uri))
    expected, _ = predict(model, spec, input_schema(spec).rows(co2.iloc[76:100]))
    assert list(answer.columns) == ["step", "co2"] and answer["step"].tolist() == list(range(1, 13))
    np.testing.assert_allclose(answer["co2"].to_numpy(), expected[0, :, 0], rtol=1e-6)
    truth = co2["co2"].to_numpy()[100:112]
    assert np.abs(answer["co2"].to_numpy() - truth).mean() < 3.0  # ppm, a year ahead


def test_the_logged_model_takes_the_long_format_frame(trained, long_frame):
    import mlflow

    _, summary = trained["lstm"]
    predicted = mlflow.pyfunc.load_model(summary.model_uri).predict(long_frame)
    truth = long_frame.groupby("image")["digit"].first().to_numpy()
    assert len(predicted) == 60 and np.mean(np.asarray(predicted) == truth) >= 0.5


def test_sequences_of_any_length_are_served(trained, serve_port):
    from tests.helpers import served
    from trainers.models import predict

    _, summary = trained["lstm"]
    with served(summary.model_uri, "seq-lstm", serve_port, KEY) as deployment:
        rng = np.random.default_rng(0)
        sequences = [rng.uniform(0, 16, size=(n, 8)).round(1).tolist() for n in (3, 8, 5)]
        with httpx.Client(headers={"Authorization": f"Bearer {KEY}"}, timeout=30) as client:
            answer = client.post(deployment.url + "/v1/predict", json={"sequences": sequences})
            too_long = client.post(
                deployment.url + "/v1/predict", json={"sequences": [[[0.0] * 8] * 9]}
            )
        model, spec = deployment.bundle.load()
        expected, probabilities = predict(model, spec, input_schema(spec).rows(sequences))
        assert answer.status_code == 200, answer.text
        assert answer.json()["predictions"] == expected.tolist()
        np.testing.assert_allclose(answer.json()["probabilities"], probabilities, rtol=1e-5)
        assert too_long.status_code == 422 and "at most 8" in too_long.json()["message"]


def test_histories_are_served_as_forecasts(forecaster, co2, serve_port):
    from tests.helpers import served
    from trainers.models import predict

    _, summary = forecaster
    with served(summary.model_uri, "co2-lstm", serve_port, KEY) as deployment:
        history = [[value] for value in co2["co2"].to_numpy()[200:230]]  # 30 months
        with httpx.Client(headers={"Authorization": f"Bearer {KEY}"}, timeout=30) as client:
            answer = client.post(deployment.url + "/v1/predict", json={"history": history})
            short = client.post(deployment.url + "/v1/predict", json={"history": history[:10]})
            anonymous = httpx.post(deployment.url + "/v1/predict", json={"history": history})
        model, spec = deployment.bundle.load()
        expected, _ = predict(model, spec, input_schema(spec).rows(history))
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["targets"] == ["co2"] and body["horizon"] == 12
        np.testing.assert_allclose(body["forecast"], expected[0].T, rtol=1e-5)
        assert short.status_code == 422 and "at least 24" in short.json()["message"]
        assert anonymous.status_code == 401


def test_a_pbt_sweep_of_every_recurrent_kind_under_zero3_registers_a_champion(sweep, mlflow_client):
    """One trial per kind (a grid), PBT perturbing the lr: a trial that exploits another takes
    its checkpoint and its kind; the best forecaster is registered."""
    from orchestrator.tracking import fetch_final_model
    from tests.helpers import children
    from trainers.models import load_model

    code, summary = sweep(
        "co2-sweep",
        **{**SERIES, "optim": {**SERIES["optim"], "epochs": 6}},
        model={"kind": "gru", "hidden": 16},
        deepspeed={"zero_stage": 3},
        sweep={
            "space": {
                "optim.lr": {"loguniform": [0.001, 0.01]},
                "model.kind": {"grid": ["rnn", "lstm", "gru"]},
            },
            "num_samples": 1,
            "max_concurrent": 2,
            "scheduler": "pbt",
        },
    )
    assert code == 0 and summary.best is not None
    runs = children(mlflow_client, summary.parent_run_id)
    assert {run.data.params["model.kind"] for run in runs} == {"rnn", "lstm", "gru"}
    assert all(run.info.status == "FINISHED" for run in runs)
    best = mlflow_client.get_run(summary.best.run_id)
    assert {"test_mase", "baseline/naive_mase"} <= set(best.data.metrics)
    champion = mlflow_client.get_model_version_by_alias("co2-sweep", "champion")
    _, spec = load_model(fetch_final_model(f"models:/co2-sweep/{champion.version}"))
    assert spec.kind == best.data.params["model.kind"] and spec.task == "forecast"
