"""A killed worker resumes from its checkpoint; a CLI run talks to loopback addresses only."""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

pytestmark = pytest.mark.integration
REPO = Path(__file__).parents[2]


def train_workers() -> list[psutil.Process]:
    found = []
    for process in psutil.Process(os.getpid()).children(recursive=True):
        try:
            if "RayTrainWorker" in " ".join(process.cmdline()):
                found.append(process)
        except psutil.Error:
            continue
    return found


def kill_a_worker_after_first_checkpoint(storage: Path, name: str, killed: list) -> None:
    deadline = time.time() + 240
    while time.time() < deadline:
        if list(storage.glob(f"{name}-*/checkpoint_*")) and train_workers():
            time.sleep(1.0)  # let the checkpoint's upload and registration complete
            victim = train_workers()[-1]
            victim.send_signal(signal.SIGKILL)
            killed.append(victim.pid)
            return
        time.sleep(0.2)


def test_killed_worker_resumes_from_checkpoint(train, mlflow_client, workspace):
    killed: list[int] = []
    killer = threading.Thread(
        target=kill_a_worker_after_first_checkpoint,
        args=(workspace / "ray_results", "killed", killed),
    )
    killer.start()
    code, summary = train(
        "killed",
        optim={"epochs": 12},
        run={"max_failures": 1},
        deepspeed={"zero_stage": 1, "precision": "bf16"},  # bf16 resumes too
    )
    killer.join()
    assert killed, "no worker was killed"
    assert code == 0
    assert summary.metrics["test_accuracy"] >= 0.9
    experiment = mlflow_client.get_experiment_by_name("killed")
    runs = mlflow_client.search_runs([experiment.experiment_id])
    assert len(runs) == 1  # one MLflow run, not one per attempt
    assert runs[0].data.tags["redblue.restarts"] == "1"
    assert runs[0].info.status == "FINISHED"


def descendants_connections() -> tuple[set[str], set[str]]:
    """(remote addresses of connections, wildcard listening sockets) of this process tree."""
    remotes, listening = set(), set()
    pids = {p.pid for p in psutil.Process(os.getpid()).children(recursive=True)} | {os.getpid()}
    for conn in psutil.net_connections(kind="inet"):
        if conn.pid not in pids:
            continue
        if conn.raddr:
            remotes.add(conn.raddr.ip)
        elif conn.status == psutil.CONN_LISTEN and conn.laddr.ip in ("0.0.0.0", "::"):
            listening.add(f"{conn.laddr.ip}:{conn.laddr.port} ({psutil.Process(conn.pid).name()})")
    return remotes, listening


def is_loopback(ip: str) -> bool:
    address = ipaddress.ip_address(ip)
    mapped = getattr(address, "ipv4_mapped", None)  # ::ffff:127.0.0.1
    return (mapped or address).is_loopback


def test_cli_run_uses_loopback_only(ray_session, workspace):
    """`redblue -v train ... --register --json` on the session Ray: loopback only, one JSON
    object on stdout, the libraries' INFO logs on stderr, and a registered champion."""
    remotes: set[str] = set()
    listening: set[str] = set()
    done = threading.Event()

    def sample():
        while not done.is_set():
            found_remotes, found_listening = descendants_connections()
            remotes.update(found_remotes)
            listening.update(found_listening)
            time.sleep(0.25)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "orchestrator.cli",
                "-v",  # the libraries' INFO logs, on stderr beside --json's stdout
                "train",
                str(REPO / "configs/digits.yaml"),
                "--set",
                "optim.epochs=3",
                "--set",
                "name=cli-loopback",
                "--set",
                f"run.storage_path={workspace / 'ray_results'}",
                "--register",
                "--json",
            ],
            env={**os.environ, "RAY_ADDRESS": ray_session},
            cwd=workspace,
            capture_output=True,
            text=True,
            timeout=600,
        )
    finally:
        done.set()
        sampler.join()
    assert result.returncode == 0, result.stderr[-3000:]
    # --json: stdout is one JSON object; the rounds and the summary table go to stderr.
    summary = json.loads(result.stdout)
    assert summary["exit_code"] == 0 and summary["metrics"]["test_accuracy"] > 0.5
    assert summary["model_uri"].startswith("models:/")
    assert "MLflow run_id" in result.stderr and "round 1/" in result.stderr
    assert "DeepSpeed info: version=" in result.stderr  # -v: DeepSpeed's INFO, from a worker
    # --register: a new registered model, so its first version is champion
    assert summary["registered"]["version"] == "1", summary
    assert summary["registered"]["alias"] == "champion"
    # Named as its Ray Train folder, with MLflow's own context tags.
    from mlflow.tracking import MlflowClient

    run = MlflowClient(os.environ["MLFLOW_TRACKING_URI"]).get_run(summary["run_id"])
    assert run.info.run_name == f"cli-loopback-{summary['run_id'][:8]}"
    assert (workspace / "ray_results" / run.info.run_name).is_dir()
    assert run.data.tags["mlflow.user"] and run.data.tags["mlflow.source.name"]
    assert len(run.data.tags["mlflow.source.git.commit"]) == 40
    assert remotes, "the sampler saw no connections at all"
    outside = {ip for ip in remotes if not is_loopback(ip)}
    assert not outside, f"connections to non-loopback addresses: {outside}"
    assert not listening, f"listening on all interfaces: {sorted(listening)}"
