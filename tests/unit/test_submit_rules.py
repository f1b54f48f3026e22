"""What `redblue submit` uploads, and what it refuses before uploading."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from orchestrator.cli import app
from orchestrator.cluster.submit import (
    ALWAYS_EXCLUDED,
    SubmitError,
    check_size,
    package,
    runtime_env,
)


@pytest.fixture()
def checkout(tmp_path) -> Path:
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / ".gitignore").write_text("*.bin\n")
    for name in ("configs/run.yaml", "code.py", "data.bin", ".venv/lib.py", "ray_results/x"):
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x" * 10)
    (tmp_path / "big.csv").write_bytes(b"0" * 5000)
    return tmp_path


def test_package_leaves_out_ignored_and_output_files(checkout):
    names = {str(name) for name, _ in package(checkout).files}
    assert names == {".gitignore", "configs/run.yaml", "code.py", "big.csv"}


def test_oversized_package_is_refused_naming_the_biggest_files(checkout):
    found = package(checkout)
    check_size(found, limit=10_000)
    with pytest.raises(SubmitError, match=r"big\.csv \(0\.0 MiB\)"):
        check_size(found, limit=4_000)


def test_runtime_env_passes_the_tracking_uri_but_never_credentials(checkout, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    env = runtime_env(package(checkout))
    assert env["env_vars"]["MLFLOW_TRACKING_URI"] == "http://127.0.0.1:5000"
    assert env["excludes"] == ALWAYS_EXCLUDED and env["working_dir"] == str(checkout)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "https://user:secret@mlflow.example.com")
    assert "MLFLOW_TRACKING_URI" not in runtime_env(package(checkout))["env_vars"]


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--", "train", "configs/digits.yaml"], "no cluster"),
        (["--address", "127.0.0.1:1", "--", "serve", "x.yaml"], "train CONFIG"),
        (["--address", "127.0.0.1:1", "--", "train", "absent.yaml"], "config file not found"),
        (
            ["--address", "127.0.0.1:1", "--", "train", "configs/digits.yaml", "--set", "seed=-1"],
            "seed",
        ),
    ],
)
def test_bad_submissions_exit_2_before_anything_is_uploaded(args, expected, monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.chdir(Path(__file__).parents[2])
    result = CliRunner().invoke(app, ["submit", *args])
    assert result.exit_code == 2, result.output
    assert expected in " ".join(result.output.split())


def test_config_outside_the_uploaded_folder_is_refused(tmp_path, monkeypatch):
    config = Path(__file__).parents[2] / "configs" / "digits.yaml"
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(
        app, ["submit", "--address", "127.0.0.1:1", "--", "train", str(config)]
    )
    assert result.exit_code == 2 and "must be inside this folder" in result.output
