"""`redblue deploy` over HTTPS: a self-signed certificate, both ingresses, real TLS on 127.0.0.1."""

from __future__ import annotations

import os
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from tests.helpers import haproxies_of, haproxy_folders, left_after, sample_rows
from tests.tls_certs import make_certificate

pytestmark = pytest.mark.integration

KEY = "tls-Wq7Rz2Kd9Lm4Xv8Nb3Hs6T"  # 24 base64url characters
AUTH = {"Authorization": f"Bearer {KEY}"}
START_TIMEOUT_S = 150


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> tuple[Path, Path]:
    return make_certificate(tmp_path_factory.mktemp("tls"))


def wait_for_https(deploy: subprocess.Popen, url: str, cert: Path, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if deploy.poll() is not None:
            pytest.fail(f"the deploy exited with {deploy.returncode}: {log.read_text()[-3000:]}")
        try:
            if httpx.get(url, verify=str(cert), timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    pytest.fail(f"no HTTPS answer from {url}: {log.read_text()[-3000:]}")


@pytest.mark.parametrize("ingress, stop", [("haproxy", "SIGKILL"), ("proxy", "SIGTERM")])
def test_deploy_serves_https_only_with_the_given_certificate(
    ingress, stop, register_model, certificate, tmp_path
):
    """`redblue deploy` with serve.tls_cert/tls_key: the API answers over HTTPS with that
    certificate (verified against the file, as a client of a self-signed endpoint does), the key
    is still required, plain HTTP on the port gets no answer, and the printed URL and curl line
    say https with --cacert. Then the deploy alone is stopped: SIGTERM (as a process manager
    stops it) ends it within 15 s, leaving nothing; SIGKILL (no cleanup runs) leaves no HAProxy
    behind. (SIGTERM to the whole process group: tests/integration/test_deploy_cleanup.py.)"""
    from orchestrator.environment import free_port
    from orchestrator.serving.api_keys import ApiKeys
    from orchestrator.serving.application import DeployArgs
    from orchestrator.serving.check import check_requests
    from orchestrator.serving.rollout import Deployment, base_url
    from serve_apps.guard import key_digest
    from serve_apps.requests.table import FORM as TABLE
    from serve_apps.settings import ServeSection
    from trainers.tasks.base import CheckInputs

    cert, key = certificate
    version = register_model(f"tls{ingress}", 6)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_SERVE")}
    env.pop("RAY_ADDRESS", None)
    env["REDBLUE_API_KEY"] = KEY
    command = [str(Path(sys.executable).with_name("redblue")), "deploy"]
    command += [f"models:/tls{ingress}/{version}", "--set", f"serve.ingress={ingress}"]
    command += ["--set", f"serve.port={port}", "--set", "serve.num_replicas=1"]
    command += ["--set", f"serve.tls_cert={cert}", "--set", f"serve.tls_key={key}"]
    log = tmp_path / "deploy.log"
    with log.open("w") as sink:
        deploy = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=sink, stderr=sink)
    base = f"https://127.0.0.1:{port}"
    started = time.monotonic()
    started_processes: list[psutil.Process] = []
    folders: set[Path] = set()  # the HAProxy ingress's, found once it serves
    try:
        wait_for_https(deploy, f"{base}/healthz", cert, log)
        print(f"{ingress}: HTTPS answered {time.monotonic() - started:.1f} s after the start")
        with httpx.Client(base_url=base, verify=str(cert), timeout=30) as client:
            answer = client.post(
                "/v1/predict", json={"inputs": sample_rows(2).tolist()}, headers=AUTH
            )
            assert answer.status_code == 200, answer.text
            assert len(answer.json()["predictions"]) == 2
            assert client.get("/v1/model").status_code == 401
            assert client.get("/v1/model", headers=AUTH).json()["model"]["version"] == version
        # What `redblue deploy --check` sends, through its HTTPS client, against this endpoint.
        settings = ServeSection(port=port, tls_cert=str(cert), tls_key=str(key))
        args = DeployArgs(model="m", name="n", serve=settings, key_digests=[key_digest(KEY)])
        keys = ApiKeys((KEY,), "env", "REDBLUE_API_KEY")
        deployment = Deployment(args, None, base_url(settings))  # type: ignore[arg-type]
        assert check_requests(deployment, keys, TABLE, CheckInputs(sample_rows(3)))
        served = ssl.get_server_certificate(("127.0.0.1", port))
        assert ssl.PEM_cert_to_DER_cert(served) == ssl.PEM_cert_to_DER_cert(cert.read_text())
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            httpx.get(f"{base}/healthz", timeout=10)  # the system's CAs do not know it
        with pytest.raises(httpx.RemoteProtocolError):  # no TLS handshake: no answer at all
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10)
        deadline = time.monotonic() + 60  # the summary comes after the endpoint answers
        while "serving; Ctrl-C" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.5)
        started_processes = psutil.Process(deploy.pid).children(recursive=True)
        folders = {f for p in started_processes for f in haproxy_folders(p)}
    finally:
        signalled = time.monotonic()
        deploy.send_signal(getattr(signal, stop))
        try:
            deploy.wait(timeout=60)
        except subprocess.TimeoutExpired:
            deploy.kill()
            deploy.wait()
    stopped_after = time.monotonic() - signalled
    output = log.read_text()
    assert f"{base}/v1/predict" in output and f"--cacert {cert} " in output
    assert KEY not in output
    assert "HAProxy on other nodes" not in output  # Serve's warning, for other nodes: none here
    if stop == "SIGKILL":
        assert_no_haproxy_outlives(folders, signalled)
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"{base}/healthz", verify=str(cert), timeout=2)
    else:
        left = left_after(started_processes, signalled)
        print(f"{ingress}: SIGTERM to the deploy: exited after {stopped_after:.1f} s, left {left}")
        assert stopped_after <= 15 and not left, (stopped_after, left)
        assert deploy.returncode in (0, 130), output[-3000:]  # 130: stopped by the signal


def assert_no_haproxy_outlives(folders: set[Path], killed_at: float) -> None:
    """The HAProxy of a SIGKILLed deploy (no cleanup ran) exits within 60 s; the next deploy
    finds nothing to reap, and removes the dead deploy's folder."""
    from orchestrator.serving.ingress import reap_stale_haproxy

    assert folders, "the HAProxy ingress was not found"
    while time.monotonic() < killed_at + 60 and haproxies_of(folders):
        time.sleep(0.5)
    assert not haproxies_of(folders), "HAProxy outlived its deploy"
    print(f"HAProxy gone {time.monotonic() - killed_at:.1f} s after the SIGKILL")
    assert reap_stale_haproxy() == []
    assert not any(folder.exists() for folder in folders), folders


def test_the_ingress_of_a_joined_cluster_is_read_from_its_workers(ray_session):
    """Deploying with TLS to a cluster first asks its workers (they inherit `ray start`'s
    environment) whether it runs the HAProxy ingress, which takes no certificate: the session's
    Ray was started with it."""
    from orchestrator.serving.rollout import _cluster_runs_haproxy

    assert _cluster_runs_haproxy() is True
