"""``redblue predict`` end to end: the CLI on the session's local Ray reads a CSV file and a
Parquet folder with Ray Data, predicts in actors, writes the input's rows plus the predictions,
and matches the model's in-process prediction row by row (joined on an id column); bad input
exits 2 before Ray loads."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from tests.helpers import sample_rows

pytestmark = pytest.mark.integration

ROWS = 3000
NAMES = [f"f{i}" for i in range(8)]
LIGHT = ["--cpus-per-actor", "0.5", "--batch-size", "700"]  # beside other tests' actors


@pytest.fixture(scope="module")
def inputs(register_model, tmp_path_factory) -> dict:
    """A registered 3-class model (no training: random weights, fitted scaling), its folder,
    and ROWS rows as one CSV file and as a Parquet folder of three parts (plus _SUCCESS), with an
    id and a text column the model ignores."""
    from orchestrator.tracking import fetch_final_model

    root = tmp_path_factory.mktemp("predict")
    uri = f"models:/predicttest/{register_model('predicttest', 7)}"
    frame = pd.DataFrame(sample_rows(ROWS, seed=3), columns=NAMES)
    frame = frame.assign(id=np.arange(ROWS), note=[f"row {i}" for i in range(ROWS)])
    frame.to_csv(root / "rows.csv", index=False)
    (root / "parts").mkdir()
    for i, part in enumerate(np.array_split(np.arange(ROWS), 3)):
        frame.iloc[part].to_parquet(root / "parts" / f"part-{i}.parquet", index=False)
    (root / "parts" / "_SUCCESS").write_text("")
    frame.drop(columns=["f5"]).to_csv(root / "no_f5.csv", index=False)
    model_dir = fetch_final_model(uri, root / "downloaded")
    return {"root": root, "uri": uri, "model_dir": model_dir, "frame": frame}


def expected(model_dir: Path, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray | None]:
    """The model's own prediction of ``frame``, in one process, through its family."""
    from trainers.families import family_of
    from trainers.models import load_model
    from trainers.tasks import input_schema

    model, spec = load_model(model_dir)
    family = family_of(spec.kind)
    return family.predict(model, spec, input_schema(spec).rows(frame))


def read_back(folder: Path, fmt: str) -> pd.DataFrame:
    """The written part files, their rows put back in the input's order by ``id`` (Ray Data
    writes blocks in parallel and keeps no order)."""
    parts = list(folder.glob(f"*.{fmt}"))
    assert parts, list(folder.iterdir())
    read = pd.read_parquet if fmt == "parquet" else pd.read_csv
    frame = pd.concat([read(part) for part in parts], ignore_index=True)
    return frame.sort_values("id", ignore_index=True)


def predict(*args: str):
    from orchestrator.cli import app

    return CliRunner().invoke(app, ["predict", *args, *LIGHT])


def test_a_csv_file_gets_its_predictions_and_probabilities_row_by_row(ray_session, inputs):
    root, frame = inputs["root"], inputs["frame"]
    result = predict(inputs["uri"], str(root / "rows.csv"), "-o", str(root / "out.csv"), "--proba")
    assert result.exit_code == 0, result.output
    assert f"predicted {ROWS:,} rows" in result.output and str(root / "out.csv") in result.output

    out = read_back(root / "out.csv", "csv")
    probas = ["proba_a", "proba_b", "proba_c"]
    assert list(out.columns) == [*frame.columns, "prediction", *probas]
    assert (out["id"].to_numpy() == np.arange(ROWS)).all()  # every row, once
    assert (out["note"] == frame["note"]).all()
    np.testing.assert_allclose(out[NAMES].to_numpy(), frame[NAMES].to_numpy(), rtol=1e-6)
    labels, probabilities = expected(inputs["model_dir"], frame)
    assert (out["prediction"].to_numpy() == labels).all()
    np.testing.assert_allclose(out[probas].to_numpy(), probabilities, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out[probas].sum(axis=1), 1.0, rtol=1e-5)

    again = predict(inputs["uri"], str(root / "rows.csv"), "-o", str(root / "out.csv"))
    assert again.exit_code == 2 and "exists; pass --overwrite" in again.output
    (root / "file.csv").write_text("an earlier output, as one file\n")
    replaced = predict(inputs["uri"], str(root / "rows.csv"), "-o", str(root / "file.csv"))
    assert replaced.exit_code == 2 and "exists; pass --overwrite" in replaced.output
    replaced = predict(
        inputs["uri"], str(root / "rows.csv"), "-o", str(root / "file.csv"), "--overwrite"
    )
    assert replaced.exit_code == 0, replaced.output
    assert len(read_back(root / "file.csv", "csv")) == ROWS


def test_a_parquet_folder_with_a_local_model_folder_and_two_actors(ray_session, inputs):
    root, frame = inputs["root"], inputs["frame"]
    (root / "preds").mkdir()  # an existing output, replaced
    (root / "preds" / "stale.parquet").write_bytes(b"old")
    args = [str(inputs["model_dir"]), str(root / "parts"), "-o", str(root / "preds")]
    result = predict(*args, "--concurrency", "2", "--overwrite", "--json")
    assert result.exit_code == 0, result.output
    found = json.loads(result.stdout)  # the one JSON object; the rest went to stderr
    assert (found["exit_code"], found["rows"], found["output"]) == (0, ROWS, str(root / "preds"))
    assert found["output_format"] == "parquet" and found["seconds"] > 0

    out = read_back(root / "preds", "parquet")
    assert list(out.columns) == [*frame.columns, "prediction"]
    pd.testing.assert_frame_equal(out[frame.columns], frame, check_dtype=False)
    labels, _ = expected(inputs["model_dir"], frame)
    assert (out["prediction"].to_numpy() == labels).all()


SCRIPT = """
import json, sys
from typer.testing import CliRunner
from orchestrator.cli import app
results = {}
for name, args in json.loads(sys.argv[1]).items():
    r = CliRunner().invoke(app, ["predict", *args])
    results[name] = [r.exit_code, r.output]
results["ray imported"] = "ray" in sys.modules
print(json.dumps(results))
"""


def test_bad_input_exits_2_naming_the_problem_before_ray_is_imported(ray_session, inputs):
    root, uri = inputs["root"], inputs["uri"]
    cases = {
        "missing column": ([uri, str(root / "no_f5.csv"), "-o", str(root / "x.csv")], "['f5']"),
        "no input": ([uri, str(root / "nope.csv"), "-o", str(root / "x.csv")], "not found"),
        "unknown model": (["models:/nope/1", str(root / "rows.csv"), "-o", "x"], "models:/nope/1"),
        "not a file type": ([uri, str(root / "parts" / "_SUCCESS"), "-o", "x"], "unsupported"),
    }
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, json.dumps({k: a for k, (a, _) in cases.items()})],
        capture_output=True,
        text=True,
        env=env,
        cwd=root,
    )
    results = json.loads(done.stdout.strip().splitlines()[-1])
    for name, (_, message) in cases.items():
        code, output = results[name]
        assert code == 2 and message in output.replace("\n", " "), (name, output)
    assert results["ray imported"] is False
