"""What `redblue submit` uploads (exactly what Ray packs, less files named like secrets), and
what it refuses before uploading."""

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
    assert env["excludes"][: len(ALWAYS_EXCLUDED)] == ALWAYS_EXCLUDED
    assert env["working_dir"] == str(checkout)
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


PRIVATE_KEY = (
    "-----BEGIN OPENSSH " + "PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n"
)  # split: not one


def ray_zip_names(root: Path, excludes: list[str], tmp_path: Path) -> set[str]:
    """The files in the package Ray itself builds for a job from ``root``."""
    import zipfile

    from ray._private.ray_constants import get_runtime_env_default_excludes
    from ray._private.runtime_env.packaging import _zip_files

    tmp_path.mkdir()
    target = tmp_path / "package.zip"
    _zip_files(str(root), get_runtime_env_default_excludes() + excludes, str(target), True)
    return {name for name in zipfile.ZipFile(target).namelist() if not name.endswith("/")}


def test_the_preview_is_what_ray_packs_and_secret_named_files_stay_out(checkout, tmp_path_factory):
    zips = tmp_path_factory.mktemp("zips")
    (checkout / "configs" / ".gitignore").write_text("local-*.yaml\n")
    (checkout / "configs" / "local-mine.yaml").write_text("x")
    (checkout / ".rayignore").write_text("notes/\n")
    (checkout / "notes").mkdir()
    (checkout / "notes" / "todo.md").write_text("x")
    (checkout / ".git" / "info").mkdir(parents=True, exist_ok=True)
    (checkout / ".git" / "info" / "exclude").write_text("scratch.py\n")  # git's rule, not Ray's
    (checkout / "scratch.py").write_text("x")
    secrets = [".env", ".env.prod", "server.key", "tls/cert.pem", "api-key", "db_secret.txt"]
    for name in secrets:
        (checkout / name).parent.mkdir(parents=True, exist_ok=True)
        (checkout / name).write_text("hunter2")
    found = package(checkout)
    uploaded = {str(name) for name, _ in found.files}
    assert uploaded == ray_zip_names(checkout, found.excludes, zips / "a")
    assert "scratch.py" in uploaded and "configs/local-mine.yaml" not in uploaded
    assert "notes/todo.md" not in uploaded
    assert not uploaded & set(secrets)
    assert {str(name) for name in found.secrets_left_out} == set(secrets)
    allowed = package(checkout, ["tls/cert.pem"])
    assert "tls/cert.pem" in {str(name) for name, _ in allowed.files}
    assert "tls/cert.pem" in ray_zip_names(checkout, allowed.excludes, zips / "b")
    # A folder named like a secret is not entered, so a file allowed inside it stays out too.
    (checkout / "team_secrets").mkdir()
    (checkout / "team_secrets" / "notes.txt").write_text("x")
    inside = package(checkout, ["team_secrets/notes.txt"])
    names = {str(name) for name, _ in inside.files}
    assert names == ray_zip_names(checkout, inside.excludes, zips / "c")
    assert "team_secrets/notes.txt" not in names


def test_a_file_holding_a_private_key_is_refused_unless_allowed(checkout):
    (checkout / "configs" / "deploy_notes.txt").write_text(PRIVATE_KEY)
    with pytest.raises(SubmitError, match=r"configs/deploy_notes\.txt: looks like a private key"):
        package(checkout)
    names = {str(name) for name, _ in package(checkout, ["configs/deploy_notes.txt"]).files}
    assert "configs/deploy_notes.txt" in names


def test_dry_run_lists_the_upload_and_a_key_file_exits_2(tmp_path, monkeypatch):
    root = Path(__file__).parents[2]
    monkeypatch.chdir(root)
    args = ["submit", "--address", "127.0.0.1:1", "--dry-run", "--", "train", "configs/digits.yaml"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    listed = {line.split()[-1] for line in result.stdout.splitlines() if line.strip()}
    assert {"configs/digits.yaml", "pyproject.toml"} <= listed and ".env" not in listed
    assert not any(name.startswith((".venv/", ".git/")) for name in listed)
    planted = root / "configs" / "redblue-test-planted.txt"
    planted.write_text(PRIVATE_KEY)
    try:
        result = CliRunner().invoke(app, args)
    finally:
        planted.unlink()
    assert result.exit_code == 2 and "redblue-test-planted.txt" in result.output
    assert "--allow-file" in result.output


def test_the_cluster_gets_an_allow_list_of_the_shell_and_never_its_keys(monkeypatch):
    from orchestrator.cluster.local import cluster_env

    planted = {
        "REDBLUE_API_KEY": "k" * 40,
        "REDBLUE_API_KEY_FILE": "/home/me/keys",
        "AWS_SECRET_ACCESS_KEY": "s" * 40,
        "GITHUB_TOKEN": "t" * 40,
        "MLFLOW_TRACKING_PASSWORD": "p" * 10,
        "REDBLUE_CACHE": "/tmp/cache",
        "OMP_NUM_THREADS": "1",
    }
    for name, value in planted.items():
        monkeypatch.setenv(name, value)
    env = cluster_env()
    assert env["REDBLUE_CACHE"] == "/tmp/cache" and env["OMP_NUM_THREADS"] == "1"
    assert env["RAY_AUTH_MODE"] == "token" and "HOME" in env and "PATH" in env
    for name in ("REDBLUE_API_KEY", "REDBLUE_API_KEY_FILE", "AWS_SECRET_ACCESS_KEY"):
        assert name not in env
    assert "GITHUB_TOKEN" not in env and "MLFLOW_TRACKING_PASSWORD" not in env
    passed = cluster_env(["AWS_*"])
    assert passed["AWS_SECRET_ACCESS_KEY"] == "s" * 40 and "REDBLUE_API_KEY" not in passed
    assert "REDBLUE_API_KEY" not in cluster_env(["REDBLUE_*"])


def test_passing_the_api_key_to_a_cluster_exits_2():
    result = CliRunner().invoke(app, ["cluster", "up", "--pass-env", "REDBLUE_API_KEY"])
    assert result.exit_code == 2 and "API keys stay on this machine" in result.output
