"""A `redblue deploy` killed with SIGKILL (no cleanup runs) leaves no HAProxy behind; one sent
SIGTERM (alone, or with its whole process group) stops within 15 s and leaves no process."""

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

from tests.helpers import alive, left_after

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def descendants(pid: int) -> list[psutil.Process]:
    with contextlib.suppress(psutil.Error):
        return psutil.Process(pid).children(recursive=True)
    return []


def haproxies_of(folders: set[Path]) -> list[psutil.Process]:
    """Every HAProxy running from one of ``folders`` (a reload starts a new one)."""
    found = []
    for process in psutil.process_iter(["name", "cmdline"]):
        text = " ".join(process.info["cmdline"] or [])
        if process.info["name"] == "haproxy" and any(str(f) in text for f in folders):
            found.append(process)
    return [p for p in found if alive(p)]


def haproxy_folders(process: psutil.Process) -> set[Path]:
    """The ``redblue-haproxy-*`` folder of a running HAProxy's config; none for another process
    or once it exited."""
    try:
        command = process.cmdline() if process.name() == "haproxy" else []
    except psutil.Error:
        return set()
    if "-f" not in command:
        return set()
    config = Path(command[command.index("-f") + 1])
    return {f for f in config.parents if f.name.startswith("redblue-haproxy-")}


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


def test_a_sigkilled_deploy_leaves_no_haproxy(register_model, tmp_path):
    from orchestrator.serving.ingress import reap_stale_haproxy

    version = register_model("killeddeploy", 4)
    with serving_deploy(f"models:/killeddeploy/{version}", tmp_path) as (deploy, port, folders):
        deploy.send_signal(signal.SIGKILL)
        deploy.wait()
        killed_at = time.monotonic()
        while time.monotonic() < killed_at + 60 and haproxies_of(folders):
            time.sleep(0.5)
        assert not haproxies_of(folders), "HAProxy outlived its deploy"
        print(f"HAProxy gone {time.monotonic() - killed_at:.1f} s after the SIGKILL")
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
        # The next deploy finds nothing to reap, and removes the dead deploy's folder.
        assert reap_stale_haproxy() == []
        assert not any(folder.exists() for folder in folders), folders


def test_sigterm_to_a_deploys_process_group_stops_it_within_15_s_leaving_no_process(
    register_model, tmp_path
):
    """SIGTERM to a deploy's whole process group (as a terminal's Ctrl-C reaches every process
    of the group, Ray's own included): it exits within 15 s, and every process it started is
    gone by then. (SIGTERM to the deploy alone: tests/integration/test_tls.py.)"""
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
