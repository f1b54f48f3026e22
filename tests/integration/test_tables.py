"""A real table with string categories and gaps (the bundled penguins) through every path:
trained with both strategies under ZeRO-2 (categories one-hot and embedded), its preprocessing
logged to MLflow, the logged pyfunc model taking the raw frame, and served over HTTP as records
with strings and nulls."""

from __future__ import annotations

import httpx
import numpy as np
import pytest

from trainers.tasks import input_schema

pytestmark = pytest.mark.integration

KEY = "itest-Pg7Tq2Wx9Rz4Lm6Nb3Vc"
PENGUINS = {
    # max_one_hot 2: island and year (3 categories each) get embeddings, sex (2) is one-hot.
    "data": {
        "source": "penguins",
        "features": {"year": {"type": "category"}, "body_mass_g": {"missing": "median"}},
        "max_one_hot": 2,
    },
    "model": {"kind": "mlp", "hidden": [32]},
    "optim": {"epochs": 12, "lr": 0.01, "batch_size": 32, "class_weights": "balanced"},
    "strategy": {"phase_steps": 4},
    "deepspeed": {"zero_stage": 2},
    "scaling": {"num_workers": 1, "cpus_per_worker": 1},
    "checkpoint": {"every_rounds": 4, "keep": 1},
}


@pytest.fixture(scope="module")
def trained(train):
    runs = {}
    for strategy in ("red_blue", "standard"):
        sections = {**PENGUINS, "strategy": {**PENGUINS["strategy"], "kind": strategy}}
        runs[strategy] = train(f"penguins-{strategy}", **sections)
    return runs


@pytest.fixture(scope="module")
def raw():
    from trainers.config import DataConfig
    from trainers.data.tables import load_table

    return load_table(DataConfig(source="penguins")).frame


def test_both_strategies_learn_a_table_with_strings_and_gaps(trained, mlflow_client):
    for strategy, (code, summary) in trained.items():
        assert code == 0, strategy
        assert summary.metrics["test_accuracy"] >= 0.9, (strategy, summary.metrics)
        run = mlflow_client.get_run(summary.run_id)
        params = run.data.params
        assert params["preprocessing.categories"] == "island,sex,year"
        assert params["preprocessing.imputed"].startswith("bill_length_mm:mean")
        assert "body_mass_g:median" in params["preprocessing.imputed"]
        assert params["data.dropped_labels"] == "0"
        artifacts = {a.path for a in mlflow_client.list_artifacts(summary.run_id)}
        assert "preprocessing.json" in artifacts


def test_the_logged_model_takes_the_raw_frame_with_gaps(trained, raw):
    import mlflow

    from orchestrator.tracking import fetch_final_model
    from trainers.models import load_model, predict

    _, summary = trained["red_blue"]
    model, spec = load_model(fetch_final_model(summary.model_uri))
    assert [c.name for c in input_schema(spec).preprocessing.embedded] == [
        "island",
        "year",
    ]
    frame = raw.iloc[[0, 3, 8, 100, 200, 339]]  # 3: every measurement missing; 8, 339: no sex
    assert frame.isna().any().any()
    logged = mlflow.pyfunc.load_model(summary.model_uri).predict(frame)
    expected, _ = predict(model, spec, input_schema(spec).rows(frame))
    assert list(logged) == list(expected)


@pytest.mark.parametrize("runtime", ["torch", "onnxruntime"])
def test_records_with_strings_and_nulls_are_served(trained, raw, serve_port, runtime):
    """By the weights in torch, and by the graph exported when deployed in ONNX Runtime: the
    same answers."""
    from tests.helpers import served
    from trainers.models import predict

    _, summary = trained["standard"]
    with served(summary.model_uri, "penguins", serve_port, KEY, runtime) as deployment:
        assert deployment.bundle.runtime == runtime
        part = raw.iloc[[0, 3, 8, 150, 339]]
        records = part.astype(object).where(part.notna(), None).to_dict("records")
        records[1] |= {"island": "Atlantis"}  # a category never seen in training
        with httpx.Client(headers={"Authorization": f"Bearer {KEY}"}, timeout=30) as client:
            answer = client.post(deployment.url + "/v1/predict", json={"records": records})
            wrong = client.post(
                deployment.url + "/v1/predict",
                json={"records": [records[0] | {"flipper_length_mm": "long"}]},
            )
        model, spec = deployment.bundle.load()
        expected, probabilities = predict(model, spec, input_schema(spec).rows(records))
        assert answer.status_code == 200, answer.text
        assert answer.json()["predictions"] == expected.tolist()
        np.testing.assert_allclose(answer.json()["probabilities"], probabilities, rtol=1e-5)
        assert wrong.status_code == 422
        assert "records[0].flipper_length_mm: expected a number" in wrong.json()["message"]


def test_the_raw_table_is_batch_predicted_with_ray_data(trained, raw, tmp_path):
    import pandas as pd
    from typer.testing import CliRunner

    from orchestrator.cli import app
    from orchestrator.tracking import fetch_final_model
    from trainers.models import load_model, predict

    _, summary = trained["red_blue"]
    frame = raw.assign(id=range(len(raw)))
    frame.to_csv(tmp_path / "penguins.csv", index=False)  # gaps written as empty cells
    args = [summary.model_uri, str(tmp_path / "penguins.csv"), "-o", str(tmp_path / "out.csv")]
    result = CliRunner().invoke(app, ["predict", *args, "--proba", "--cpus-per-actor", "0.5"])
    assert result.exit_code == 0, result.output
    parts = list((tmp_path / "out.csv").glob("*.csv"))
    out = pd.concat([pd.read_csv(p) for p in parts]).sort_values("id", ignore_index=True)
    assert len(out) == len(raw) and out["id"].tolist() == list(range(len(raw)))
    model, spec = load_model(fetch_final_model(summary.model_uri))
    labels, probabilities = predict(model, spec, input_schema(spec).rows(raw))
    assert out["prediction"].tolist() == labels.tolist()
    probas = [f"proba_{name}" for name in spec.classes]
    np.testing.assert_allclose(out[probas].to_numpy(), probabilities, rtol=1e-5, atol=1e-6)


def test_the_model_exports_to_onnx_checked_logged_and_registered(
    trained, raw, tmp_path, mlflow_client, monkeypatch
):
    """``redblue export``: the fp32 graph written with what plain ONNX Runtime needs, logged as
    a model that takes the raw frame (strings, gaps, embedded categories) as the original does;
    int8 registered with its tags through the champion gate; a graph that answers otherwise is
    refused with exit 1."""
    import json
    import re

    import mlflow
    import onnxruntime as ort
    from typer.testing import CliRunner

    from orchestrator.cli import app
    from trainers.export import onnx_graph

    _, summary = trained["standard"]
    out = tmp_path / "onnx"
    result = CliRunner().invoke(app, ["export", summary.model_uri, "--output", str(out)])
    assert result.exit_code == 0, result.output
    info = json.loads((out / "export.json").read_text())
    assert info["quantized"] == "none" and info["parity_max_abs_diff"] <= 1e-4
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == list(info["inputs"])
    (exported_uri,) = re.findall(r"models:/m-[0-9a-f]{32}", result.output)
    frame = raw.head(40)
    original = mlflow.pyfunc.load_model(summary.model_uri).predict(frame)
    exported = mlflow.pyfunc.load_model(exported_uri)
    assert list(exported.predict(frame)) == list(original)
    assert exported.metadata.signature == mlflow.models.get_model_info(summary.model_uri).signature

    result = CliRunner().invoke(
        app, ["export", summary.model_uri, "--quantize", "int8", "--register", "--json"]
    )
    assert result.exit_code == 0, result.output
    found = json.loads(result.stdout)  # the one JSON object; the tables went to stderr
    assert found["registered"]["alias"] == "champion" and found["model_uri"].startswith("models:/")
    assert found["metrics"]["parity_max_abs_diff"] >= 0 and found["folder"] is None
    name = "penguins-standard"  # the experiment's name, for a model logged by a run
    (version,) = mlflow_client.search_model_versions(f"name='{name}'")
    assert found["registered"]["version"] == str(version.version)
    assert version.tags["redblue.format"] == "onnx" and version.tags["redblue.quantized"] == "int8"
    assert version.tags["redblue.source_uri"] == summary.model_uri
    assert mlflow_client.get_model_version_by_alias(name, "champion").version == version.version
    run = mlflow_client.get_run(version.run_id)
    assert run.data.metrics["test_accuracy"] >= summary.metrics["test_accuracy"] - 0.005

    from tests.helpers import breaking

    monkeypatch.setattr(onnx_graph, "to_onnx", breaking(onnx_graph.to_onnx))
    result = CliRunner().invoke(app, ["export", summary.model_uri])
    assert result.exit_code == 1, result.output
    assert re.search(
        r"differ from PyTorch's: largest difference [0-9.e+-]+ on \d+ samples", result.output
    )


def test_the_model_is_distilled_into_a_smaller_student(trained, workspace, mlflow_client):
    """``redblue compress`` by distillation on ZeRO-2 workers: the student (8 hidden units, the
    teacher's embedded and one-hot columns) trains against the teacher's outputs, and its run
    holds the trade-off."""
    from orchestrator.compressing.run import compress
    from tests.integration.conftest import planned

    _, teacher = trained["standard"]
    sections = {
        **PENGUINS,
        "model": {"kind": "mlp", "hidden": [8]},
        "optim": {**PENGUINS["optim"], "epochs": 6},
        "compression": {"method": "distill", "temperature": 2.0, "alpha": 0.5},
    }
    cfg, plan = planned(workspace, "penguins-student", sections)
    assert compress(cfg, plan, teacher.model_uri, None) == 0
    (run,) = mlflow_client.search_runs(
        [mlflow_client.get_experiment_by_name("penguins-student").experiment_id]
    )
    assert run.data.tags["redblue.kind"] == "compress"
    assert run.data.tags["redblue.teacher"] == teacher.model_uri
    assert run.data.params["compression.method"] == "distill"
    metrics = run.data.metrics
    assert metrics["student_parameters"] < 0.5 * metrics["teacher_parameters"]
    assert metrics["student_torch_size_bytes"] < metrics["teacher_torch_size_bytes"]
    assert metrics["student_onnx_test_accuracy"] == metrics["student_torch_test_accuracy"]
    assert metrics["test_accuracy"] >= 0.8, metrics
