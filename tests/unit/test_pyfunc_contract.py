"""The logged model's input contract without Ray or a tracking server: what ``features_from``
accepts and refuses, and a model saved the way ``TrackedRun.log_model`` logs it, loaded back with
``mlflow.pyfunc.load_model``."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException

from orchestrator.pyfunc_model import features_from
from tests.helpers import sample_rows, saved_model
from trainers.spec import ModelSpec

NAMES = ["a", "b", "c"]
SPEC = ModelSpec("mlp", "classification", 3, 2, feature_names=NAMES, classes=[0, 1])
ROWS = np.array([[1.5, 2.0, -3.0], [4.0, 5.25, 6.0]])


def test_a_frame_is_read_by_column_name_and_extra_columns_are_ignored():
    frame = pd.DataFrame({"c": ROWS[:, 2], "label": ["x", "y"], "a": ROWS[:, 0], "b": ROWS[:, 1]})
    got = features_from(frame, SPEC)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, ROWS.astype(np.float32))


@pytest.mark.parametrize("dtype", ["int64", "int32", "uint8", "float32", "float64"])
def test_any_numeric_column_dtype_is_accepted(dtype):
    frame = pd.DataFrame(np.array([[1, 2, 3], [4, 5, 6]]), columns=NAMES).astype(dtype)
    np.testing.assert_array_equal(features_from(frame, SPEC), [[1, 2, 3], [4, 5, 6]])


@pytest.mark.parametrize(
    "data",
    [
        ROWS,
        ROWS.tolist(),
        [dict(zip(NAMES, row, strict=True)) for row in ROWS.tolist()],
        {name: ROWS[:, i].tolist() for i, name in enumerate(NAMES)},
    ],
    ids=["array", "list-of-rows", "records", "columns"],
)
def test_arrays_lists_and_mappings_are_accepted(data):
    np.testing.assert_array_equal(features_from(data, SPEC), ROWS.astype(np.float32))


def test_one_flat_row_and_one_record_are_one_row():
    np.testing.assert_array_equal(features_from([1, 2, 3], SPEC), [[1, 2, 3]])
    np.testing.assert_array_equal(features_from({"b": 2, "a": 1, "c": 3}, SPEC), [[1, 2, 3]])


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (pd.DataFrame({"a": [1.0], "label": [0]}), r"missing feature column\(s\) \['b', 'c'\]"),
        (np.ones((2, 4)), r"expected rows of 3 features .* shape \(2, 4\)"),
        ([[1.0, 2.0], [3.0, 4.0]], r"expected rows of 3 features .* shape \(2, 2\)"),
        (np.ones((2, 3, 1)), r"shape \(2, 3, 1\)"),
        ([[1.0, 2.0, 3.0], [1.0]], r"expected a DataFrame, a numpy array or a list of rows"),
        ([["1", "x", "2"]], r"expected a DataFrame, a numpy array or a list of rows"),
        (pd.DataFrame({"a": [1.0], "b": ["x"], "c": [2.0]}), r"column 'b': expected a number"),
        (pd.DataFrame({"a": [np.nan], "b": [1.0], "c": [1.0]}), r"column 'a': 1 missing value"),
        (pd.DataFrame({"a": [1.0], "b": [1.0], "c": [np.inf]}), r"column 'c': infinite"),
    ],
    ids=["missing", "too-wide", "too-narrow", "3-d", "ragged", "strings", "text", "nan", "inf"],
)
def test_bad_input_is_refused_with_a_message_that_names_the_problem(data, message):
    with pytest.raises(MlflowException, match=message) as caught:
        features_from(data, SPEC)
    assert caught.value.get_http_status_code() == 400


@pytest.mark.parametrize("kind", ["mlp", "linear"])
def test_the_saved_model_takes_frames_of_any_numeric_dtype_arrays_and_lists(
    tmp_path: Path, kind: str
):
    import mlflow

    import trainers
    from orchestrator.tracking import PYFUNC_CODE, input_example, model_signature
    from trainers.models import load_model, predict
    from trainers.spec import FINAL_MODEL_DIR

    directory = saved_model(tmp_path / FINAL_MODEL_DIR, seed=3, kind=kind)
    model, spec = load_model(directory)
    rows = np.round(sample_rows(6, seed=5)).astype(np.float32)  # whole numbers: int64 is exact
    expected, _ = predict(model, spec, rows)
    signature = model_signature(spec.feature_names, rows[:2], expected[:2])
    inputs = signature.inputs.to_dict()
    assert [(c["name"], c["type"]) for c in inputs] == [(n, "double") for n in spec.feature_names]
    float32 = pd.DataFrame(rows[:2], columns=spec.feature_names)  # a Parquet file's columns
    assert model_signature(spec.feature_names, float32, expected[:2]) == signature
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        mlflow.pyfunc.save_model(  # MLflow checks the example against the signature
            tmp_path / "model",
            python_model=str(PYFUNC_CODE),
            artifacts={FINAL_MODEL_DIR: str(directory)},
            code_paths=[str(Path(trainers.__file__).parent)],
            signature=signature,
            input_example=input_example(float32, spec.feature_names),
        )
    loaded = mlflow.pyfunc.load_model(str(tmp_path / "model"))
    assert loaded.metadata.get_input_schema() == signature.inputs

    frame = pd.DataFrame(rows.astype(np.float64), columns=spec.feature_names)
    frame["target"] = "a"
    frame = frame[frame.columns[::-1]]  # label first, features reversed
    for data in (
        frame,
        frame.astype({name: np.int64 for name in spec.feature_names}),
        rows.astype(np.float64),
        rows.tolist(),
        frame.to_dict(orient="records"),
    ):
        np.testing.assert_array_equal(np.asarray(loaded.predict(data)), expected)
    with pytest.raises(MlflowException, match=r"missing feature column\(s\) \['f0'\]"):
        loaded.predict(frame.drop(columns=["f0"]))
    with pytest.raises(MlflowException, match=r"expected rows of 8 features"):
        loaded.predict(rows[:, :5])
