"""``redblue ui``: the MLflow UI on the tracking store in force, on loopback, until stopped."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx
import psutil
import pytest

from orchestrator.environment import free_port

pytestmark = pytest.mark.integration


def test_the_ui_serves_the_tracking_store_on_loopback_only(tmp_path):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    MlflowClient(uri).create_experiment("seen-in-the-ui")
    port = free_port()
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    ui = subprocess.Popen(
        [sys.executable, "-m", "orchestrator.cli", "ui", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline, answer = time.monotonic() + 120, None
        while time.monotonic() < deadline and ui.poll() is None:
            try:
                answer = httpx.get(
                    f"http://127.0.0.1:{port}/api/2.0/mlflow/experiments/search",
                    params={"max_results": 10},
                    timeout=5,
                )
                break
            except httpx.TransportError:
                time.sleep(1)
        assert answer is not None and answer.status_code == 200, ui.poll()
        names = {e["name"] for e in answer.json()["experiments"]}
        assert "seen-in-the-ui" in names
        tree = [psutil.Process(ui.pid), *psutil.Process(ui.pid).children(recursive=True)]
        listening = {
            c.laddr.ip for p in tree for c in p.net_connections("inet") if c.status == "LISTEN"
        }
        assert listening == {"127.0.0.1"}, listening
    finally:
        ui.send_signal(signal.SIGINT)
        try:
            ui.wait(timeout=30)
        except subprocess.TimeoutExpired:
            ui.kill()
            ui.wait()
