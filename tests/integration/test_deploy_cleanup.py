"""A `redblue deploy` sent SIGTERM with its whole process group stops within 15 s and leaves no
process. (SIGTERM to the deploy alone, and a SIGKILL that leaves no HAProxy behind:
tests/integration/test_tls.py.)"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from tests.helpers import alive, descendants, haproxies_of, haproxy_folders, left_after

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@contextlib.contextmanager
def serving_deploy(model: str, folder: Path):
    """A foreground ``redblue deploy`` of ``model`` in a session of its own (its process group),
    once it serves: (process, port, its HAProxy folders). Killed if still running at the end."""
    from orchestrator.environment import free_port

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_SERVE")}
    env.pop("RAY_ADDRESS", None)
    env["REDBLUE_API_KEY"] = secrets.token_urlsafe(32)
    command = [str(Path(sys.executable).with_name("redblue")), "deploy", model]
    command += ["--set", f"serve.port={port}", "--set", "serve.num_replicas=1"]
    log_path = folder / "deploy.log"
    log = log_path.open("w")
    deploy = subprocess.Popen(
        command, cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    haproxies: list[psutil.Process] = []
    folders: set[Path] = set()
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and deploy.poll() is None:
            # A reload replaces HAProxy's process: the folders of those still running.
            haproxies = [p for p in descendants(deploy.pid) if haproxy_folders(p)]
            folders = {f for p in haproxies for f in haproxy_folders(p)}
            with contextlib.suppress(httpx.HTTPError):
                if folders and httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                    break
            time.sleep(1)
        else:
            pytest.fail(f"the deploy did not serve: {log_path.read_text()[-3000:]}")
        yield deploy, port, folders
    finally:
        log.close()
        if deploy.poll() is None:
            deploy.kill()
        for process in haproxies + haproxies_of(folders):
            with contextlib.suppress(psutil.Error):
                process.kill()


def test_sigterm_to_a_deploys_process_group_stops_it_within_15_s_leaving_no_process(
    register_model, tmp_path
):
    """SIGTERM to a deploy's whole process group (as a terminal's Ctrl-C reaches every process
    of the group, Ray's own included): it exits within 15 s, and every process it started is
    gone by then."""
    receiver = "process group"
    version = register_model("termdeploy", 5)
    with serving_deploy(f"models:/termdeploy/{version}", tmp_path) as (deploy, port, _):
        started = [p for p in descendants(deploy.pid) if alive(p)]
        assert len(started) > 3, started
        signalled = time.monotonic()
        os.killpg(deploy.pid, signal.SIGTERM)
        deploy.wait(timeout=60)
        exited = time.monotonic() - signalled
        left = left_after(started, signalled)
        print(f"SIGTERM to the {receiver}: exited after {exited:.1f} s, left {left}")
        assert exited <= 15 and not left, (exited, left)
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
