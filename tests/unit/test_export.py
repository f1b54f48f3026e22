"""Exported models without Ray: each family's ONNX graph against its torch model (fp32 within
1e-4, int8 close), the dynamic batch and time axes, a categorical table's raw rows through the
exported model, the file in a plain ONNX Runtime session, a broken graph refused, serving and
the pyfunc's loader without torch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from tests.helpers import (
    saved_forecaster,
    saved_gan,
    saved_model,
    saved_sequence_model,
    saved_table_model,
)
from trainers.export.check import (
    PARITY_TOLERANCE,
    at_lengths,
    checked_graph,
    describe,
    parity,
)
from trainers.export.onnx_graph import ExportError, node_types, quantize_int8, to_onnx
from trainers.export.runtime import EXPORT_FILE, ONNX_FILE, OnnxModel, load_predictor
from trainers.models import load_model, predict
from trainers.spec import ModelSpec
from trainers.tasks import input_schema, task_for


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    """A saved model of each family and task: random weights, fitted scaling."""
    root = tmp_path_factory.mktemp("export")
    return {
        "mlp": saved_model(root / "mlp", seed=0),
        "linear": saved_model(root / "linear", seed=1, kind="linear"),
        "mlp-penguins": saved_table_model(root / "penguins")[0],
        "lstm-bidirectional-2-layers": saved_sequence_model(
            root / "lstm", "lstm", "classification", layers=2, bidirectional=True
        ),
        "gru-regression": saved_sequence_model(root / "gru", "gru", "regression"),
        "lstm-64": saved_sequence_model(root / "lstm64", "lstm", "classification", hidden=64),
        "rnn": saved_sequence_model(root / "rnn", "rnn", "classification"),
        "lstm-forecaster": saved_forecaster(root / "forecast")[0],
        "gru-forecaster-relative": saved_forecaster(root / "relative", kind="gru")[0],
        "gan": saved_gan(root / "gan", epochs=1),
    }


def _examples(spec: ModelSpec, count: int = 32) -> np.ndarray:
    task = task_for(spec)
    return input_schema(spec).rows(task.example_input(spec, count))


@pytest.mark.parametrize(
    "name",
    [
        "mlp",
        "linear",
        "mlp-penguins",
        "lstm-bidirectional-2-layers",
        "gru-regression",
        "lstm-64",
        "rnn",
        "lstm-forecaster",
        "gru-forecaster-relative",
        "gan",
    ],
)
def test_every_family_exports_within_tolerance_and_int8_stays_close(folders, name):
    model, spec = load_model(folders[name])
    graph = to_onnx(model, spec)
    features = _examples(spec)
    fp32 = OnnxModel(graph.data, spec).predict
    parts = at_lengths(features)
    if features.ndim == 3:  # a recurrent model is checked at two lengths at least
        lengths = {int(n) for part in parts for n in part[..., -1].sum(axis=1)}
        assert len(lengths) >= 2, lengths
    checked = parity(model, spec, fp32, features)
    assert checked.ok, str(checked)
    int8 = quantize_int8(graph.data)
    types = node_types(int8)
    assert "MatMulInteger" in types, types  # the heads' and MLPs' matrix products
    if spec.kind == "lstm":  # its weights folded into initializers, whatever their size
        assert "DynamicQuantizeLSTM" in types and "LSTM" not in types, types
    expected, probabilities = predict(model, spec, features)
    got, int8_probabilities = OnnxModel(int8, spec).predict(features)
    if probabilities is not None:  # int8 moves probabilities by a little, not by a lot
        assert np.abs(int8_probabilities - probabilities).max() < 0.1
    else:
        scale = np.abs(np.asarray(expected)).max()
        assert np.abs(np.asarray(got) - np.asarray(expected)).max() < 0.1 * scale


def test_the_dynamic_axes_take_any_batch_and_any_length(folders):
    for name in ("mlp", "lstm-bidirectional-2-layers"):
        model, spec = load_model(folders[name])
        graph = to_onnx(model, spec)
        session = ort.InferenceSession(graph.data, providers=["CPUExecutionProvider"])
        (shape,) = graph.inputs.values()
        width = spec.in_features
        if name == "mlp":
            assert shape == ["batch", width]
            sizes = [(1, width), (64, width)]
        else:
            assert shape == ["batch", "time", width]
            sizes = [(1, 2, width), (64, 9, width), (3, 1, width)]
        for size in sizes:
            rows = np.random.default_rng(0).normal(size=size).astype(np.float32)
            (out,) = session.run(None, {session.get_inputs()[0].name: rows})
            assert out.shape[0] == size[0]


def _exported_folder(folder: Path, target: Path, quantize: str = "none") -> Path:
    """``folder`` with its graph beside the weights, as ``redblue export --output`` writes it."""
    import shutil

    model, spec = load_model(folder)
    graph = to_onnx(model, spec)
    data = quantize_int8(graph.data) if quantize == "int8" else graph.data
    shutil.copytree(folder, target)
    (target / ONNX_FILE).write_bytes(data)
    checked = parity(model, spec, OnnxModel(data, spec).predict, _examples(spec))
    info = describe(graph, spec, quantized=quantize, parity=checked)
    (target / EXPORT_FILE).write_text(json.dumps(info))
    return target


def test_raw_rows_with_strings_and_gaps_go_through_the_exported_model(folders, tmp_path):
    folder = _exported_folder(folders["mlp-penguins"], tmp_path / "exported")
    _, raw = saved_table_model(tmp_path / "again")
    predict_rows, spec = load_predictor(folder)
    assert isinstance(predict_rows.__self__, OnnxModel)  # the graph runs, not the weights
    rows = input_schema(spec).rows(raw)
    assert raw.isna().any().any() and isinstance(raw["island"].iloc[0], str)  # gaps, strings
    model, _ = load_model(folders["mlp-penguins"])
    labels, probabilities = predict_rows(rows)
    expected, expected_probabilities = predict(model, spec, rows)
    assert (labels == expected).all()
    assert np.abs(probabilities - expected_probabilities).max() <= PARITY_TOLERANCE


def test_the_file_runs_in_a_plain_session_with_the_documented_names(folders, tmp_path):
    folder = _exported_folder(folders["lstm-forecaster"], tmp_path / "exported")
    info = json.loads((folder / EXPORT_FILE).read_text())
    session = ort.InferenceSession(str(folder / ONNX_FILE), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == list(info["inputs"]) == ["steps"]
    assert [o.name for o in session.get_outputs()] == [info["output"]["name"]] == ["answer"]
    model, spec = load_model(folder)
    windows = _examples(spec, 5)
    (forecast,) = session.run(None, {"steps": windows[..., :-1]})  # every step real
    expected, _ = predict(model, spec, windows)
    assert forecast.shape == expected.shape
    assert np.abs(forecast - expected).max() <= PARITY_TOLERANCE


def test_a_graph_that_answers_otherwise_is_refused_with_the_difference(folders, monkeypatch):
    from tests.helpers import breaking
    from trainers.export import check

    model, spec = load_model(folders["mlp"])
    assert checked_graph(model, spec)[1]["parity_max_abs_diff"] <= PARITY_TOLERANCE

    monkeypatch.setattr(check, "to_onnx", breaking(to_onnx))
    message = r"differ from the weights': largest difference [0-9.e+-]+ on 16 samples \(allowed"
    with pytest.raises(ExportError, match=message):
        checked_graph(model, spec)


def test_the_loader_runs_an_exported_model_without_torch(folders, tmp_path):
    folder = _exported_folder(folders["mlp-penguins"], tmp_path / "exported")
    script = (
        "import sys; sys.modules['torch'] = None\n"  # any import of torch fails
        "import json, numpy as np\n"
        "from trainers.export.runtime import load_predictor\n"
        "from trainers.tasks import input_schema\n"
        f"predict_rows, spec = load_predictor({str(folder)!r})\n"
        "record = {'island': 'Biscoe', 'bill_length_mm': 45.0, 'bill_depth_mm': None,\n"
        "          'flipper_length_mm': 210, 'body_mass_g': 5000, 'sex': None, 'year': 2008}\n"
        "rows = input_schema(spec).rows([record])\n"
        "print(json.dumps(predict_rows(rows)[0].tolist()))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=Path.cwd()
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout)[0] in ("Adelie", "Chinstrap", "Gentoo")


def test_an_onnxruntime_replica_answers_as_the_torch_one(folders, tmp_path):
    import anyio
    import httpx

    from serve_apps.guard import key_digest
    from serve_apps.local_server import local_api
    from serve_apps.model_bundle import ModelBundle, RuntimeChoiceError
    from serve_apps.settings import ServeSection

    key = "k" * 24
    _, raw = saved_table_model(tmp_path / "again")
    records = json.loads(raw.head(20).to_json(orient="records"))

    async def answers(bundle: ModelBundle, runtime: str) -> dict:
        api = local_api(bundle, ServeSection(runtime=runtime, max_rows=32), [key_digest(key)])
        transport = httpx.ASGITransport(app=api)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            headers = {"Authorization": f"Bearer {key}"}
            response = await client.post("/v1/predict", json={"records": records}, headers=headers)
        assert response.status_code == 200, response.text
        return response.json()

    identity = {"uri": "models:/penguins/1", "name": "penguins", "version": "1", "run_id": None}
    weights = ModelBundle.from_directory(folders["mlp-penguins"], **identity)
    by_torch = anyio.run(answers, weights, "torch")
    by_onnx = anyio.run(answers, weights, "onnxruntime")  # exported and checked when deployed
    assert by_onnx["predictions"] == by_torch["predictions"]
    torch_probabilities = np.asarray(by_torch["probabilities"])
    assert np.abs(np.asarray(by_onnx["probabilities"]) - torch_probabilities).max() <= 1e-4
    int8 = _exported_folder(folders["mlp-penguins"], tmp_path / "int8", quantize="int8")
    quantized = ModelBundle.from_directory(int8, **identity)
    assert quantized.for_runtime("auto").runtime == "onnxruntime"
    with pytest.raises(RuntimeChoiceError, match="int8 ONNX export"):
        quantized.for_runtime("torch")


def test_the_int8_rule_and_arguments_refused_before_any_export(tmp_path):
    from typer.testing import CliRunner

    from orchestrator.cli import app
    from trainers.export.check import int8_problem
    from trainers.spec import ScoreRule

    accuracy, mse = ScoreRule("test_accuracy", True), ScoreRule("test_mse", False)
    assert int8_problem(accuracy, 0.95, 0.946) is None
    assert "0.60 points lower" in str(int8_problem(accuracy, 0.95, 0.944))
    assert int8_problem(mse, 1.0, 1.019) is None
    assert "3.0% higher" in str(int8_problem(mse, 1.0, 1.03))
    a_file = tmp_path / "taken"
    a_file.write_text("x")
    cases = {
        ("models:/digits/1", "--format", "torchscript"): "the one format is onnx",
        ("models:/digits/1", "--quantize", "int4"): "--quantize int4: use one of none, int8",
        ("digits.onnx",): "is not a model URI",
        ("models:/digits/1", "--output", str(a_file)): "is a file; name a folder",
    }
    for args, message in cases.items():
        result = CliRunner().invoke(app, ["export", *args])
        assert result.exit_code == 2, (args, result.output)
        assert message in result.output, (args, result.output)
