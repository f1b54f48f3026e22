"""Serving over real HTTP against a real Serve app on the session's Ray, models from real MLflow."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.helpers import sample_rows

pytestmark = pytest.mark.integration

KEY = "integration-test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture(scope="module")
def served(ray_session, serve_port, register_model, workspace):
    """Model ``servetest`` v1 (@champion) and v2, v1 served by 2 replicas."""
    from mlflow.tracking import MlflowClient

    from orchestrator.deploy_run import start
    from orchestrator.model_source import parse_model_uri, resolve_bundle
    from orchestrator.serve_app import DeployArgs
    from serve_apps.guard import key_digest
    from serve_apps.settings import ServeSection

    first, second = register_model("servetest", 1), register_model("servetest", 2)
    client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    client.set_registered_model_alias("servetest", "champion", first)
    uri = parse_model_uri("models:/servetest@champion")
    settings = ServeSection(port=serve_port, num_replicas=2, cpus_per_replica=0.25, max_rows=50)
    args = DeployArgs(
        model="models:/servetest@champion",
        name="servetest",
        serve=settings,
        key_digests=[key_digest(KEY)],
        audit_log=str(workspace / "audit.jsonl"),
    )
    deployment = start(args, resolve_bundle(uri), None)
    yield {"deployment": deployment, "uri": uri, "versions": (first, second), "client": client}
    from ray import serve

    serve.delete("servetest")


def url(served, path: str) -> str:
    return served["deployment"].url + path


def replica_pids(app: str) -> dict[str, int]:
    """Replica id -> pid of the app's running replicas."""
    import ray
    from ray.util.state import list_actors

    actors = list_actors(
        address=ray.get_runtime_context().gcs_address,
        filters=[("class_name", "=", f"ServeReplica:{app}:Predictor")],
    )
    return {a.actor_id: a.pid for a in actors if a.state == "ALIVE"}


class Load:
    """Clients sending single-row requests in a loop; counts outcomes and versions seen."""

    def __init__(self, served, clients: int = 3) -> None:
        self.target = url(served, "/v1/predict")
        self.outcomes: list[tuple[float, int | str, str | None]] = []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._client, daemon=True) for _ in range(clients)]

    def _client(self) -> None:
        row = sample_rows(1).tolist()
        with httpx.Client(headers=AUTH, timeout=30) as client:
            while not self.stop.is_set():
                try:
                    response = client.post(self.target, json={"inputs": row})
                except httpx.HTTPError as exc:
                    self.outcomes.append((time.monotonic(), type(exc).__name__, None))
                    continue
                ok = response.status_code == 200
                version = response.json()["model"]["version"] if ok else response.text[:200]
                self.outcomes.append((time.monotonic(), response.status_code, version))

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=60)

    def failures(self) -> list:
        return [o for o in self.outcomes if o[1] != 200]


def test_predictions_equal_in_process_predictions(served):
    from trainers.models import predict

    bundle = served["deployment"].bundle
    rows = sample_rows(20, seed=7)
    records = [
        dict(zip(bundle.model_config["feature_names"], map(float, r), strict=True)) for r in rows
    ]
    with httpx.Client(headers=AUTH, timeout=30) as client:
        by_inputs = client.post(url(served, "/v1/predict"), json={"inputs": rows.tolist()})
        by_records = client.post(url(served, "/v1/predict"), json={"records": records})
        info = client.get(url(served, "/v1/model")).json()
    model, spec = bundle.load()
    labels, probabilities = predict(model, spec, rows)
    assert by_inputs.status_code == 200, by_inputs.text
    assert by_inputs.json()["predictions"] == labels.tolist()
    assert by_records.json()["predictions"] == labels.tolist()
    np.testing.assert_allclose(by_inputs.json()["probabilities"], probabilities, rtol=1e-5)
    assert by_inputs.json()["model"]["version"] == served["versions"][0]
    assert info["model"]["name"] == "servetest" and info["num_features"] == 8
    assert info["test_metrics"] == {"test_accuracy": pytest.approx(0.51)}


def test_single_rows_from_many_clients_match_one_batch(served):
    """Concurrent one-row requests (merged by @serve.batch) answer as the rows would alone."""
    rows = sample_rows(24, seed=11)
    with httpx.Client(headers=AUTH, timeout=30) as client:
        whole = client.post(url(served, "/v1/predict"), json={"inputs": rows.tolist()}).json()

    answers: dict[int, list] = {}

    def ask(index: int) -> None:
        with httpx.Client(headers=AUTH, timeout=30) as client:
            body = client.post(url(served, "/v1/predict"), json={"inputs": [rows[index].tolist()]})
            answers[index] = body.json()["predictions"]

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(rows))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [answers[i][0] for i in range(len(rows))] == whole["predictions"]


BAD_REQUESTS = [
    ({}, {"inputs": [[1.0] * 8]}, 401, "Authorization: Bearer"),
    ({"Authorization": "Bearer nope"}, {"inputs": [[1.0] * 8]}, 401, "not valid"),
    (AUTH, '{"inputs": [[1.0, 2', 422, "malformed JSON"),
    (AUTH, {"inputs": [[1.0] * 5]}, 422, "inputs[0] has 5 features; the model takes 8"),
    (AUTH, {"records": [{"f0": 1.0, "bogus": 2.0}]}, 422, "unknown fields: bogus"),
    (AUTH, '{"inputs": [[NaN, 1, 1, 1, 1, 1, 1, 1]]}', 422, "finite number"),
    (AUTH, {"inputs": []}, 422, "no rows"),
    (AUTH, {"inputs": [[1.0] * 8] * 51}, 422, "51 rows is more than the limit of 50"),
    (AUTH, "x" * (9 * 1024 * 1024), 413, "exceeds the limit"),
]


def test_every_bad_request_gets_a_json_4xx_and_no_replica_dies(served):
    before = replica_pids("servetest")
    with httpx.Client(timeout=30) as client:
        for headers, body, status, expected in BAD_REQUESTS:
            content = body if isinstance(body, str) else json.dumps(body)
            response = client.post(
                url(served, "/v1/predict"),
                content=content,
                headers={**headers, "content-type": "application/json"},
            )
            assert response.status_code == status, (expected, response.text)
            assert expected in response.json()["message"]
        assert client.get(url(served, "/healthz")).status_code == 200
        good = client.post(url(served, "/v1/predict"), json={"inputs": [[1.0] * 8]}, headers=AUTH)
        assert good.status_code == 200
    assert replica_pids("servetest") == before


def test_audit_log_records_requests_without_payload_or_key(served, workspace):
    from serve_apps.guard import key_id

    with httpx.Client(timeout=30) as client:
        seven = client.post(
            url(served, "/v1/predict"), json={"inputs": [[3.25] * 8] * 7}, headers=AUTH
        )
        refused = client.get(url(served, "/v1/model"), headers={"Authorization": "Bearer no"})
    assert (seven.status_code, refused.status_code) == (200, 401)
    log = workspace / "audit.jsonl"
    deadline = time.monotonic() + 10  # a replica writes its line after the answer has left
    while True:
        entries = [json.loads(line) for line in log.read_text().splitlines()]
        mine = [e for e in entries if e["rows"] == 7 and e["status"] == 200]
        denied = [e for e in entries if e["status"] == 401 and e["key_id"] == key_id("no")]
        if (mine and denied) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert mine and mine[-1]["key_id"] == key_id(KEY) and mine[-1]["path"] == "/v1/predict"
    fields = {"time", "method", "path", "key_id", "rows", "batch_rows", "status", "latency_ms"}
    assert set(mine[-1]) == fields and mine[-1]["batch_rows"] >= 7
    assert denied and denied[-1]["path"] == "/v1/model"
    # Only those fields on every line (no payload); the key appears nowhere.
    assert all(set(e) == fields for e in entries) and KEY not in log.read_text()


def test_new_champion_rolls_out_with_no_failed_request(served):
    """Traffic flows while the alias moves and the replicas roll; every request succeeds."""
    from orchestrator.deploy_run import _roll_if_moved

    first, second = served["versions"]
    deployment = served["deployment"]
    with Load(served) as load:
        time.sleep(2)
        served["client"].set_registered_model_alias("servetest", "champion", second)
        rolled = _roll_if_moved(deployment.args, served["uri"], deployment.bundle)
        assert rolled.version == second
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            recent = [o[2] for o in load.outcomes[-20:]]
            if len(recent) == 20 and set(recent) == {second}:
                break
            time.sleep(0.5)
        time.sleep(1)
    versions = Counter(o[2] for o in load.outcomes)
    assert load.failures() == [], load.failures()[:5]
    assert versions[first] > 0 and versions[second] > 0, versions
    assert load.outcomes[-1][2] == second
    served["deployment"] = type(deployment)(deployment.args, rolled, deployment.url)


def test_killed_replica_under_load_is_replaced_and_requests_keep_succeeding(served):
    from ray import serve

    pids = replica_pids("servetest")
    assert len(pids) == 2
    with Load(served) as load:
        time.sleep(2)
        os.kill(next(iter(pids.values())), signal.SIGKILL)
        killed_at = time.monotonic()
        time.sleep(8)
    during = [o for o in load.outcomes if o[0] >= killed_at]
    succeeded = sum(1 for o in during if o[1] == 200)
    assert len(during) > 20
    assert succeeded / len(during) >= 0.99, [o for o in during if o[1] != 200][:5]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        now = replica_pids("servetest")
        status = serve.status().applications["servetest"].status
        if len(now) == 2 and now != pids and status == "RUNNING":
            break
        time.sleep(1)
    assert len(now) == 2 and set(now.values()) != set(pids.values()), (pids, now)


def test_emitted_config_is_accepted_by_serve_deploy(served, register_model, serve_port, tmp_path):
    """`redblue deploy --emit-config` writes a file that the real `serve deploy` CLI deploys."""
    import ray
    import yaml
    from ray import serve

    from orchestrator.deploy_run import write_config
    from orchestrator.serve_app import DeployArgs
    from serve_apps.guard import key_digest

    serve.delete("servetest")  # both apps would take the route prefix /
    version = register_model("emitted", 5)
    args = DeployArgs(
        model=f"models:/emitted/{version}",
        name="emitted",
        serve=served["deployment"].args.serve,
        key_digests=[key_digest(KEY)],
    )
    path = tmp_path / "serve.yaml"
    write_config(args, path)
    config = yaml.safe_load(path.read_text())
    assert config["applications"][0]["import_path"] == "orchestrator.serve_app:app"
    assert KEY not in path.read_text()
    # A RayService takes this same document as its serveConfigV2.
    dashboard = "http://" + ray._private.worker.get_dashboard_url()
    env = {**os.environ, "RAY_AUTH_MODE": "token"}
    serve_cli = Path(sys.executable).with_name("serve")
    deployed = subprocess.run(
        [str(serve_cli), "deploy", str(path), "--address", dashboard],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert deployed.returncode == 0, deployed.stderr[-2000:]
    try:
        deadline = time.monotonic() + 120
        status = None
        while time.monotonic() < deadline:
            apps = serve.status().applications
            status = apps["emitted"].status if "emitted" in apps else None
            if status in ("RUNNING", "DEPLOY_FAILED"):
                break
            time.sleep(1)
        assert status == "RUNNING", serve.status().applications.get("emitted")
        with httpx.Client(headers=AUTH, timeout=30) as client:
            info = client.get(f"http://127.0.0.1:{serve_port}/v1/model").json()
        assert info["model"]["name"] == "emitted" and info["model"]["version"] == version
    finally:
        serve.delete("emitted")


def test_haproxy_listens_on_loopback_only(served):
    """The session's Serve runs the default HAProxy ingress; Ray 2.60 would bind its stats and
    metrics listeners to all interfaces, Redblue's launcher keeps them on 127.0.0.1."""
    import psutil

    haproxies = [p for p in psutil.Process().children(recursive=True) if p.name() == "haproxy"]
    assert haproxies, "no HAProxy under this session's Ray"
    listeners = {
        c.laddr.ip for p in haproxies for c in p.net_connections("tcp") if c.status == "LISTEN"
    }
    assert listeners == {"127.0.0.1"}, listeners


@pytest.mark.slow
def test_deploy_command_with_the_proxy_ingress(register_model, tmp_path):
    """`redblue deploy --check` end to end in its own local Ray, through Serve's Python proxy;
    nothing it started (HAProxy included) outlives it."""
    import psutil

    from orchestrator.environment import free_port

    version = register_model("viaproxy", 3)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_SERVE")}
    env["REDBLUE_API_KEY"] = KEY
    env.pop("RAY_ADDRESS", None)
    command = [str(Path(sys.executable).with_name("redblue")), "deploy"]
    command += [f"models:/viaproxy/{version}", "--check"]
    command += ["--set", "serve.ingress=proxy", "--set", f"serve.port={port}"]
    run = subprocess.Popen(
        command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    started: dict[int, psutil.Process] = {}
    names: set[str] = set()
    while run.poll() is None:
        with contextlib.suppress(psutil.Error):
            for child in psutil.Process(run.pid).children(recursive=True):
                started[child.pid] = child
                with contextlib.suppress(psutil.Error):
                    names.add(child.name())
        time.sleep(0.5)
    output = run.stdout.read() if run.stdout else ""
    assert run.returncode == 0, output[-3000:]
    assert "all 3 rows: HTTP 200" in output and f"model viaproxy v{version}" in output
    assert "haproxy" not in names and started
    time.sleep(5)  # the local Ray's processes exit after their driver
    alive = []
    for process in started.values():
        with contextlib.suppress(psutil.Error):
            if process.is_running() and process.status() != "zombie":
                alive.append(process.pid)
    assert not alive, alive
