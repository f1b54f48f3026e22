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


PASSWORD = "a-ui-test-admin-password"


@pytest.mark.parametrize("auth", [False, True], ids=["open", "auth"])
def test_the_ui_serves_the_tracking_store_on_loopback_only(tmp_path, auth):
    """On loopback; with --auth, MLflow's basic-auth app: 401 without the admin's login (API and
    pages), 200 with it, and its user store private to its owner; stopped, nothing of it is
    left running."""
    import stat

    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    MlflowClient(uri).create_experiment("seen-in-the-ui")
    port = free_port()
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "MLFLOW_AUTH_ADMIN_PASSWORD": PASSWORD}
    command = [sys.executable, "-m", "orchestrator.cli", "ui", "--port", str(port)]
    ui = subprocess.Popen(
        command + (["--auth"] if auth else []),
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
                    auth=("admin", PASSWORD) if auth else None,
                )
                break
            except httpx.TransportError:
                time.sleep(1)
        assert answer is not None and answer.status_code == 200, ui.poll()
        names = {e["name"] for e in answer.json()["experiments"]}
        assert "seen-in-the-ui" in names
        if auth:
            base = f"http://127.0.0.1:{port}"
            search = f"{base}/api/2.0/mlflow/experiments/search?max_results=1"
            assert httpx.get(search, timeout=5).status_code == 401
            assert httpx.get(search, auth=("admin", "wrong-password"), timeout=5).status_code == 401
            assert httpx.get(f"{base}/", timeout=5).status_code == 401
            folder = tmp_path / ".redblue" / "mlflow-auth"
            assert stat.S_IMODE(folder.stat().st_mode) == 0o700
            assert stat.S_IMODE((folder / "basic_auth.ini").stat().st_mode) == 0o600
        tree = [psutil.Process(ui.pid), *psutil.Process(ui.pid).children(recursive=True)]
        listening = {
            c.laddr.ip for p in tree for c in p.net_connections("inet") if c.status == "LISTEN"
        }
        assert listening == {"127.0.0.1"}, listening
    finally:
        ui.send_signal(signal.SIGHUP if auth else signal.SIGINT)  # its terminal closed, or Ctrl-C
        try:
            ui.wait(timeout=30)
        except subprocess.TimeoutExpired:
            ui.kill()
            ui.wait()
    # A signal to `redblue ui` alone (not the terminal's to its whole group) stops the MLflow
    # server it started too: `mlflow ui` runs it as a child process of its own.
    left = [p for p in tree[1:] if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert len(tree) > 2 and not left, left
