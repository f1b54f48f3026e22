"""`redblue cluster up|status|down`: a 3-node Ray cluster and an MLflow server on 127.0.0.1, and
training that spreads over its nodes and logs to its tracking server."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REDBLUE = str(Path(sys.executable).with_name("redblue"))


def redblue(*args: str, cwd: Path, env: dict, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [REDBLUE, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A 3-node local cluster for this module: (working folder, env with its exports, the
    dashboard's URL)."""
    folder = tmp_path_factory.mktemp("cluster")
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI") and not k.startswith("RAY_SERVE")
    }
    up = redblue("cluster", "up", "--nodes", "3", "--cpus-per-node", "1", cwd=folder, env=env)
    assert up.returncode == 0, up.stderr[-3000:]
    exports = dict(re.findall(r"^export (\w+)=(\S+)$", up.stdout, re.M))
    dashboard = re.search(r"--address (http://\S+)", up.stdout)
    assert dashboard, up.stdout
    yield folder, {**env, **exports}, dashboard.group(1)
    redblue("cluster", "down", cwd=folder, env=env)


def test_up_exports_loopback_addresses_and_status_lists_three_nodes(cluster):
    folder, env, _ = cluster
    assert env["RAY_ADDRESS"].startswith("127.0.0.2:")  # loopback; see local_cluster.NODE_IP
    assert env["MLFLOW_TRACKING_URI"].startswith("http://127.0.0.1:")
    assert env["RAY_AUTH_MODE"] == "token"
    status = redblue("cluster", "status", cwd=folder, env=env)
    assert status.returncode == 0, status.stderr
    assert status.stdout.count("alive") == 3, status.stdout
    again = redblue("cluster", "up", cwd=folder, env=env)
    assert again.returncode == 2 and "already runs" in again.stderr


def test_training_spreads_over_the_nodes_and_logs_to_the_tracking_server(cluster):
    from mlflow.tracking import MlflowClient

    folder, env, _ = cluster
    config = folder / "spread.yaml"
    config.write_text(
        "name: spread\n"
        "optim: {epochs: 2, batch_size: 96}\n"
        "scaling: {num_workers: 3, cpus_per_worker: 1}\n"
        f"run: {{storage_path: {folder / 'shared'}}}\n"
    )
    trained = redblue("train", str(config), cwd=folder, env=env)
    assert trained.returncode == 0, trained.stderr[-3000:]
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    (run,) = client.search_runs([client.get_experiment_by_name("spread").experiment_id])
    assert run.info.status == "FINISHED"
    assert run.data.tags["redblue.num_nodes"] == "3"
    assert run.data.metrics["test_accuracy"] > 0.5


def job_folder(folder: Path, name: str) -> Path:
    """A folder to upload as a job's working directory, holding one small config."""
    jobs = folder / name
    jobs.mkdir()
    (jobs / "job.yaml").write_text(
        f"name: {name}\n"
        "optim: {epochs: 1, batch_size: 64}\n"
        "scaling: {num_workers: 2, cpus_per_worker: 1}\n"
        f"run: {{storage_path: {folder / 'shared'}}}\n"
    )
    return jobs


def finished_run(env: dict, experiment: str):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    (run,) = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    return run


def test_redblue_submit_runs_a_job_follows_it_and_exits_with_its_outcome(cluster):
    folder, env, _ = cluster
    jobs = job_folder(folder, "submitted")
    done = redblue("submit", "--", "train", "job.yaml", cwd=jobs, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "SUCCEEDED" in done.stderr and "training finished" in done.stdout
    assert finished_run(env, "submitted").info.status == "FINISHED"


def test_plain_ray_job_submit_works_too(cluster):
    folder, env, dashboard = cluster
    jobs = job_folder(folder, "plainjob")
    runtime = json.dumps({"env_vars": {"MLFLOW_TRACKING_URI": env["MLFLOW_TRACKING_URI"]}})
    command = [str(Path(sys.executable).with_name("ray")), "job", "submit", "--working-dir", "."]
    command += ["--address", dashboard, "--runtime-env-json", runtime]
    command += ["--", "redblue", "train", "job.yaml"]
    done = subprocess.run(command, cwd=jobs, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert finished_run(env, "plainjob").info.status == "FINISHED"


def test_down_stops_exactly_what_up_started(cluster):
    import psutil

    folder, env, _ = cluster
    state = json.loads((folder / ".redblue" / "cluster.json").read_text())
    groups = {p["pid"] for p in state["processes"]}
    members = [p for p in psutil.process_iter() if _group(p) in groups]
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        down = redblue("cluster", "down", cwd=folder, env=env)
        assert down.returncode == 0, down.stderr
        alive = [p.pid for p in members if p.is_running() and p.status() != "zombie"]
        assert not alive, alive
        assert bystander.poll() is None  # nothing else was touched
        assert not (folder / ".redblue" / "cluster.json").exists()
    finally:
        bystander.kill()


def _group(process) -> int | None:
    try:
        return os.getpgid(process.pid)
    except (ProcessLookupError, PermissionError):
        return None
