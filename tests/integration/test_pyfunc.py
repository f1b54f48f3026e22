"""The logged model's contract, end to end: trained on a data file, loaded back with
``mlflow.pyfunc.load_model`` and ``mlflow models predict``, fed what a user has (the file read back
with pandas, a numpy array, a list of rows)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytestmark = pytest.mark.integration

LABEL = "target"
INT_COLUMNS = ["magnesium", "proline"]  # whole numbers in wine, stored as ints as in UCI's file


@pytest.fixture(scope="module")
def trained(train, tmp_path_factory):
    """One short run on wine written as CSV (which it trains on) and parquet; the logged model's
    URI and its expected predictions for every row of the file."""
    from sklearn.datasets import load_wine

    from orchestrator.tracking import fetch_final_model
    from trainers.models import load_model, predict

    folder = tmp_path_factory.mktemp("pyfunc-data")
    frame = load_wine(as_frame=True).frame.astype({name: "int64" for name in INT_COLUMNS})
    csv, parquet = folder / "wine.csv", folder / "wine.parquet"
    frame.to_csv(csv, index=False)
    frame.to_parquet(parquet, index=False)

    code, summary = train(
        "pyfunc-contract",
        data={"source": str(csv), "label": LABEL},
        optim={"epochs": 2, "batch_size": 32},
        scaling={"num_workers": 1},
    )
    assert code == 0
    model, spec = load_model(fetch_final_model(summary.model_uri, folder / "logged"))
    assert spec.feature_names == [c for c in frame.columns if c != LABEL]
    features = frame[spec.feature_names].to_numpy(dtype=np.float32)
    expected, _ = predict(model, spec, features)
    return {
        "summary": summary,
        "csv": csv,
        "parquet": parquet,
        "features": features,
        "expected": expected,
    }


def test_the_logged_signature_declares_a_double_column_per_feature(trained):
    import mlflow

    info = mlflow.models.get_model_info(trained["summary"].model_uri)
    columns = [(spec["name"], spec["type"]) for spec in info.signature.inputs.to_dict()]
    names = pd.read_csv(trained["csv"], nrows=0).columns.drop(LABEL)
    assert columns == [(name, "double") for name in names]


def test_pyfunc_predicts_on_frames_read_back_arrays_and_lists(trained):
    import mlflow
    from mlflow.exceptions import MlflowException

    expected = trained["expected"]
    csv_frame, parquet_frame = pd.read_csv(trained["csv"]), pd.read_parquet(trained["parquet"])
    for frame in (csv_frame, parquet_frame):
        assert (frame.dtypes[INT_COLUMNS] == np.int64).all()
        assert (frame.dtypes.drop([*INT_COLUMNS, LABEL]) == np.float64).all()
    columns = list(np.random.default_rng(0).permutation(csv_frame.columns))  # label included
    assert columns != list(csv_frame.columns)
    summary = trained["summary"]

    for uri in (summary.model_uri, f"runs:/{summary.run_id}/model"):
        loaded = mlflow.pyfunc.load_model(uri)
        for data in (
            csv_frame[columns],
            parquet_frame[columns],
            csv_frame.drop(columns=[LABEL]).to_numpy(),  # float64 array
            trained["features"],  # float32 array
            csv_frame.drop(columns=[LABEL]).to_numpy().tolist(),  # list of rows
            csv_frame[columns].to_dict(orient="records"),  # list of records
        ):
            np.testing.assert_array_equal(np.asarray(loaded.predict(data)), expected)

    with pytest.raises(MlflowException, match=r"missing feature column\(s\) \['proline'\]"):
        loaded.predict(csv_frame.drop(columns=["proline"]))
    with pytest.raises(MlflowException, match=r"expected rows of 13 features .* \(178, 12\)"):
        loaded.predict(trained["features"][:, :12])


def mlflow_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "MLFLOW_TRACKING_URI": os.environ["MLFLOW_TRACKING_URI"]}
    command = [str(Path(sys.executable).with_name("mlflow")), *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)


def test_mlflow_models_predict_from_the_command_line(trained, tmp_path):
    expected = trained["expected"].tolist()
    uri = trained["summary"].model_uri
    # The training file as is (label column included, int columns), then JSON rows.
    out = tmp_path / "csv.json"
    done = mlflow_cli(
        "models", "predict", "-m", uri, "-i", str(trained["csv"]), "-t", "csv",
        "--env-manager", "local", "-o", str(out),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(out.read_text())["predictions"] == expected

    rows = tmp_path / "rows.json"
    rows.write_text(json.dumps({"inputs": trained["features"][:5].tolist()}))
    out = tmp_path / "rows-out.json"
    done = mlflow_cli(
        "models", "predict", "-m", uri, "-i", str(rows), "-t", "json",
        "--env-manager", "local", "-o", str(out),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(out.read_text())["predictions"] == expected[:5]
