"""``redblue predict``'s rules without Ray: the input's format, the output, --proba, the input's
first rows against the model, and the per-batch predictor called as Ray Data would call it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from orchestrator.predicting import rules
from orchestrator.predicting.batch import BatchPredictor
from orchestrator.predicting.plan import PredictArgs, load_bundle, plan_prediction
from orchestrator.predicting.rules import PredictError
from orchestrator.predicting.run import input_error, summary_line
from tests.helpers import sample_rows, saved_model
from trainers.errors import InputError
from trainers.families import family_of
from trainers.models import build_model, load_model, save_model
from trainers.spec import ModelSpec
from trainers.tasks import input_schema

NAMES = [f"f{i}" for i in range(8)]


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """A 3-class model folder, a regression model folder, and inputs: a CSV, a Parquet folder
    (with a _SUCCESS marker), and a CSV lacking column f3."""
    root = tmp_path_factory.mktemp("predict-rules")
    model = saved_model(root / "model", seed=0)
    spec = ModelSpec("mlp", "regression", 8, 1, {"kind": "mlp", "hidden": [4]}, NAMES)
    regression = save_model(root / "regression", build_model(spec), spec)
    frame = pd.DataFrame(sample_rows(300), columns=NAMES).assign(id=np.arange(300), note="x")
    frame.to_csv(root / "in.csv", index=False)
    (root / "folder").mkdir()
    frame.iloc[:100].to_parquet(root / "folder" / "part-0.parquet", index=False)
    frame.iloc[100:].to_parquet(root / "folder" / "part-1.parquet", index=False)
    (root / "folder" / "_SUCCESS").write_text("")
    frame.drop(columns=["f3"]).to_csv(root / "bad.csv", index=False)
    return {"root": root, "model": model, "regression": regression}


def args(files, model="model", source="in.csv", output="out.csv", **options) -> PredictArgs:
    root = files["root"]
    return PredictArgs(str(root / model), str(root / source), str(root / output), **options)


def test_formats_come_from_suffixes_and_a_folder_has_one():
    assert rules.suffix_format("s3://bucket/x/Data.CSV") == "csv"
    assert rules.suffix_format("/d/x.pq") == "parquet"
    assert rules.suffix_format("/d/preds") is None
    assert rules.input_format("/d/x.parquet", ["/d/x.parquet"], is_folder=False) == "parquet"
    assert rules.input_format("/d", ["/d/a.csv", "/d/b.csv", "/d/notes.txt"], True) == "csv"
    assert rules.output_format("/o/preds", "csv") == "csv"
    assert rules.output_format("/o/preds.parquet", "csv") == "parquet"
    with pytest.raises(PredictError, match="unsupported file type"):
        rules.input_format("/d/x.json", ["/d/x.json"], is_folder=False)
    with pytest.raises(PredictError, match="holds no .csv or .parquet file"):
        rules.input_format("/d", ["/d/notes.txt"], is_folder=True)
    with pytest.raises(PredictError, match="mixes CSV and Parquet"):
        rules.input_format("/d", ["/d/a.csv", "/d/b.parquet"], is_folder=True)


def test_hidden_files_of_a_folder_are_not_data():
    assert rules.is_hidden("_SUCCESS") and rules.is_hidden("/.part-0.parquet.crc")
    assert rules.is_hidden("_temporary/0/part-0.parquet")
    assert not rules.is_hidden("/year=2024/part-0.parquet")


def test_output_is_new_and_apart_from_the_input():
    rules.check_output("/o/preds.csv", "/d/in.csv", exists=False, overwrite=False)
    rules.check_output("/o/preds.csv", "/d/in.csv", exists=True, overwrite=True)
    with pytest.raises(PredictError, match="exists; pass --overwrite"):
        rules.check_output("/o/preds.csv", "/d/in.csv", exists=True, overwrite=False)
    for output, source in (("/d", "/d"), ("/d/out", "/d"), ("/d", "/d/in.csv")):
        with pytest.raises(PredictError, match="overlaps the input"):
            rules.check_output(output, source, exists=True, overwrite=True)
    rules.check_output("/data-out", "/data", exists=False, overwrite=False)  # a prefix, not inside


def test_proba_columns_are_for_classification_only(files):
    _, classifier = load_model(files["model"])
    _, regressor = load_model(files["regression"])
    assert rules.prediction_columns(classifier, proba=False) == ["prediction"]
    assert rules.prediction_columns(classifier, proba=True) == [
        "prediction",
        "proba_a",
        "proba_b",
        "proba_c",
    ]
    assert rules.prediction_columns(regressor, proba=False) == ["prediction"]
    with pytest.raises(PredictError, match="--proba needs a classification model"):
        rules.prediction_columns(regressor, proba=True)
    with pytest.raises(PredictError, match=r"already has column\(s\) \['prediction'\]"):
        rules.check_columns(["id", "prediction"], ["prediction"])


def test_a_plan_checks_the_input_against_the_model(files):
    plan = plan_prediction(args(files, proba=True))
    root = files["root"]
    assert plan.files == [str(root / "in.csv")] and plan.input_format == "csv"
    assert plan.output == str(root / "out.csv") and plan.output_format == "csv"
    assert plan.added == ["prediction", "proba_a", "proba_b", "proba_c"]
    folder = plan_prediction(args(files, source="folder", output="preds"))
    assert [Path(f).name for f in folder.files] == ["part-0.parquet", "part-1.parquet"]
    assert (folder.input_format, folder.output_format) == ("parquet", "parquet")


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"source": "missing.csv"}, "missing.csv not found"),
        ({"model": "nowhere"}, "neither a model URI"),
        ({"model": "folder"}, "holds no weights.safetensors"),
        ({"source": "bad.csv"}, r"missing feature column\(s\) \['f3'\]"),
        ({"model": "regression", "proba": True}, "--proba needs a classification model"),
        ({"output": "in.csv"}, "overlaps the input"),
        ({"concurrency": 0}, "--concurrency"),
    ],
)
def test_a_bad_argument_is_refused_with_its_reason(files, changes, message):
    with pytest.raises(PredictError, match=message):
        plan_prediction(args(files, **changes))


def test_an_unsupported_file_and_an_existing_output_are_refused(files):
    root = files["root"]
    (root / "in.json").write_text("{}")
    with pytest.raises(PredictError, match="unsupported file type"):
        plan_prediction(args(files, source="in.json"))
    (root / "done.csv").mkdir(exist_ok=True)
    with pytest.raises(PredictError, match="exists; pass --overwrite"):
        plan_prediction(args(files, output="done.csv"))
    assert plan_prediction(args(files, output="done.csv", overwrite=True)).args.overwrite


def test_a_downloaded_mlflow_model_folder_is_a_model(files, tmp_path):
    import shutil

    shutil.copytree(files["model"], tmp_path / "artifacts" / "final_model")
    bundle = load_bundle(str(tmp_path))
    assert bundle.uri == str((tmp_path / "artifacts" / "final_model").resolve())


def test_the_batch_predictor_keeps_the_columns_and_adds_the_family_s_predictions(files):
    plan = plan_prediction(args(files, proba=True))
    predictor = BatchPredictor(plan.bundle, True, threads=1)
    batch = pd.read_csv(files["root"] / "in.csv")
    out = predictor(batch)
    assert list(out.columns) == [*batch.columns, *plan.added]
    pd.testing.assert_frame_equal(out[batch.columns], batch)
    model, spec = load_model(files["model"])
    family = family_of(spec.kind)
    labels, probabilities = family.predict(model, spec, input_schema(spec).rows(batch))
    assert (out["prediction"].to_numpy() == labels).all()
    proba = out[["proba_a", "proba_b", "proba_c"]].to_numpy()
    np.testing.assert_allclose(proba, probabilities, rtol=1e-6)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    with pytest.raises(InputError, match="f3"):
        predictor(batch.drop(columns=["f3"]))


def test_an_input_error_is_found_in_the_text_ray_hands_back():
    text = "ray::MapWorker()\n  File x\ntrainers.errors.InputError: column 'f2': 1 missing value(s)"
    assert input_error(RuntimeError(text)) == (
        "a batch does not fit the model: column 'f2': 1 missing value(s)"
    )
    assert input_error(RuntimeError("out of memory")) is None
    try:
        raise RuntimeError("wrapped") from InputError("NaN in f1")
    except RuntimeError as exc:
        assert input_error(exc) == "a batch does not fit the model: NaN in f1"


def test_the_summary_line():
    assert summary_line(201_264, 9.8, "/o/p.parquet") == (
        "predicted 201,264 rows in 9.8 s (20,537 rows/s) -> /o/p.parquet"
    )


def test_a_sequence_model_is_refused_with_where_to_predict_instead():
    from orchestrator.predicting.rules import check_family
    from trainers.spec import ModelSpec

    with pytest.raises(
        PredictError, match="lstm model takes sequences or a series: predict with its MLflow"
    ):
        check_family(ModelSpec("lstm", "classification", 8, 10))
