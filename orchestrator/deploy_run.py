"""``redblue deploy``: run a registered model on Ray Serve, roll it to new versions, or describe it.

With a local Ray the command serves in the foreground until Ctrl-C; with ``RAY_ADDRESS`` it deploys
to the cluster and returns. Deploying again rolls the replicas to the new model while traffic flows
(Serve starts the new replicas, then drains the old ones); ``--reload`` keeps watching the alias and
rolls on every new version.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from orchestrator import console
from orchestrator.api_keys import ApiKey, obtain_key
from orchestrator.environment import interrupt_on_sigterm, prepare_serve_env, stop_haproxy
from orchestrator.model_source import ModelURI, resolve_bundle
from orchestrator.serve_app import DeployArgs, application, serve_config
from serve_apps.model_bundle import ModelBundle
from serve_apps.settings import ServeSection

CHECK_ROWS = 3
EXIT_INVALID = 2


@dataclass(frozen=True)
class Deployment:
    """What was deployed where, and how to call it."""

    args: DeployArgs
    bundle: ModelBundle
    url: str


def port_problem(host: str, port: int) -> str | None:
    """Why the local endpoint cannot bind (host, port), or None when it can."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError as exc:
            return (
                f"cannot serve on {host}:{port}: {exc.strerror}; another server (a running "
                f"'redblue deploy'?) holds it. Pick another with --set serve.port=..."
            )
    return None


def write_config(args: DeployArgs, path: Path) -> None:
    """Write a Serve config file for ``serve deploy`` or a KubeRay RayService."""
    from orchestrator.tracking import tracking_uri

    uri = tracking_uri()
    env_vars = {} if "@" in uri else {"MLFLOW_TRACKING_URI": uri}  # never write credentials
    config = serve_config(args, env_vars)
    header = (
        "# Ray Serve config written by `redblue deploy --emit-config`.\n"
        "# Deploy: RAY_AUTH_MODE=token serve deploy THIS_FILE --address http://127.0.0.1:8265\n"
        "# (or paste it as a RayService's serveConfigV2). The model is fetched from MLflow on the\n"
        "# cluster; args.key_digests holds SHA-256 digests of the accepted keys, not the keys.\n"
    )
    path.write_text(header + yaml.safe_dump(config, sort_keys=False))


def start(args: DeployArgs, bundle: ModelBundle, address: str | None) -> Deployment:
    """Start Serve (HTTP on serve.host:serve.port) and deploy, or roll to, ``bundle``."""
    from ray import serve

    from orchestrator.environment import connect_ray

    settings = args.serve
    replicas = settings.autoscaling.min_replicas if settings.autoscaling else settings.num_replicas
    connect_ray(address, replicas * settings.cpus_per_replica)
    logging.getLogger("ray.serve").setLevel(logging.WARNING)  # our own lines say what happens
    serve.start(
        http_options={"host": settings.host, "port": settings.port},
        logging_config={"log_level": "WARNING", "enable_access_log": False},
    )
    roll_out(args, bundle)
    return Deployment(args, bundle, f"http://{settings.host}:{settings.port}")


def roll_out(args: DeployArgs, bundle: ModelBundle) -> None:
    """Deploy ``bundle`` under ``args.name``; an existing deployment is rolled without downtime."""
    from ray import serve

    console.err.print(f"deploying {bundle.label} as Serve application '{args.name}' ...")
    serve.run(application(args, bundle), name=args.name, route_prefix="/", blocking=False)


def follow(deployment: Deployment, uri: ModelURI, reload: bool) -> int:
    """Serve until Ctrl-C; with ``reload``, roll to each new version the alias points at."""
    from ray import serve

    settings = deployment.args.serve
    current = deployment.bundle
    watched = reload and uri.kind == "alias"
    if watched:
        console.err.print(f"watching {uri.text} every {settings.reload_interval_s:g} s")
    console.err.print("serving; Ctrl-C (or SIGTERM) stops and removes the deployment")
    interrupt_on_sigterm()
    try:
        while True:
            time.sleep(settings.reload_interval_s if watched else 3600)
            if watched:
                current = _roll_if_moved(deployment.args, uri, current)
    except KeyboardInterrupt:
        console.err.print("stopping ...")
        serve.delete(deployment.args.name)
        return 0


def _roll_if_moved(args: DeployArgs, uri: ModelURI, current: ModelBundle) -> ModelBundle:
    from orchestrator.model_source import ModelSourceError

    try:
        latest = resolve_bundle(uri)
    except ModelSourceError as exc:
        console.print_error(f"cannot check {uri.text}: {exc}; still serving {current.label}")
        return current
    if latest.version == current.version:
        return current
    console.err.print(f"{uri.text} moved from v{current.version} to v{latest.version}")
    roll_out(args, latest)
    console.out.print(f"now serving {latest.label}")
    return latest


def summary_rows(deployment: Deployment, key: ApiKey) -> list[tuple[str, str]]:
    args, bundle = deployment.args, deployment.bundle
    replicas = (
        f"autoscaling {args.serve.autoscaling.min_replicas}-{args.serve.autoscaling.max_replicas}"
        if args.serve.autoscaling
        else str(args.serve.num_replicas)
    )
    metrics = ", ".join(f"{k} {v:.4f}" for k, v in sorted(bundle.test_metrics.items()))
    rows = [
        ("model", f"{bundle.label}  ({bundle.uri})"),
        ("run_id", bundle.run_id or "-"),
        ("test metrics", metrics or "-"),
        ("endpoint", f"{deployment.url}/v1/predict"),
        ("docs", f"{deployment.url}/docs"),
        ("replicas", replicas),
        ("api key", key.describe(args.serve.api_key_env)),
        ("audit log", args.audit_log or "off"),
    ]
    if key.source == "generated":
        rows.append(("the key", key.value))
    return rows


def curl_line(deployment: Deployment, key: ApiKey, rows: np.ndarray) -> str:
    """A ready-to-paste curl command; the key is read from where it lives, never inlined."""
    env = deployment.args.serve.api_key_env
    secret = f"${env}" if key.source == "env" else f"$(cat {key.path})"
    body = json.dumps({"inputs": [rows[0].round(4).tolist()]})
    return (
        f"curl -s -H \"Authorization: Bearer {secret}\" -H 'Content-Type: application/json' "
        f"-d '{body}' {deployment.url}/v1/predict"
    )


def check_requests(
    deployment: Deployment, key: ApiKey, rows: np.ndarray, truth: list | None
) -> bool:
    """Send a few authenticated requests (single rows, then all at once) and print the answers."""
    import httpx

    headers = {"Authorization": f"Bearer {key.value}"}
    ok = True
    with httpx.Client(base_url=deployment.url, headers=headers, timeout=30) as client:
        for index, row in enumerate(rows):
            response = client.post("/v1/predict", json={"inputs": [row.tolist()]})
            ok &= response.status_code == 200
            console.out.print(f"row {index}: HTTP {response.status_code}  {_answer(response)}")
        response = client.post("/v1/predict", json={"inputs": rows.tolist()})
        ok &= response.status_code == 200
        console.out.print(f"all {len(rows)} rows: HTTP {response.status_code}  {_answer(response)}")
        if truth is not None:
            console.out.print(f"true labels of these rows: {truth}")
        info = client.get("/v1/model")
        ok &= info.status_code == 200
    return ok


def _answer(response) -> str:
    body = response.json()
    if "predictions" not in body:
        return str(body)
    model = body["model"]
    return f"predictions {body['predictions']}  (model {model['name']} v{model['version']})"


def sample_rows(bundle: ModelBundle, count: int = CHECK_ROWS) -> tuple[np.ndarray, list | None]:
    """Rows to try the model on and their true labels: from its bundled data set when it has
    one, else its input means (no labels)."""
    from mlflow.tracking import MlflowClient

    from orchestrator.tracking import tracking_uri
    from trainers.config import DataConfig
    from trainers.data import BUNDLED, load_dataset

    model, spec = bundle.load()
    params = (
        MlflowClient(tracking_uri()).get_run(bundle.run_id).data.params if bundle.run_id else {}
    )
    source = params.get("data.source")
    if source in BUNDLED:
        dataset = load_dataset(DataConfig(source=source))
        if dataset.features.shape[1] == spec.in_features:
            labels = dataset.labels[:count]
            truth = np.asarray(dataset.classes)[labels] if dataset.classes else labels
            return dataset.features[:count].astype(np.float32), truth.tolist()
    return np.repeat(model.input_mean.numpy()[None, :], count, axis=0), None


def audit_path(configured: str) -> str:
    """The audit log's absolute path (relative paths from the working directory)."""
    from orchestrator.environment import state_root

    return str((state_root() / os.path.expanduser(configured)).resolve())


def run(
    settings: ServeSection,
    uri: ModelURI,
    bundle: ModelBundle,
    address: str | None,
    *,
    emit_config: Path | None = None,
    reload: bool = False,
    check: bool = False,
) -> int:
    """The whole command; returns its exit code (2 when the port is taken before Ray starts)."""
    from serve_apps.guard import key_digest

    key = obtain_key(settings.api_key_env)
    args = DeployArgs(
        model=bundle.uri,
        name=bundle.name,
        serve=settings,
        key_digests=[key_digest(key.value)],
        audit_log=audit_path(settings.audit_log),
    )
    if emit_config:
        write_config(args, emit_config)
        console.out.print(f"wrote {emit_config}: {bundle.label} as Serve application '{args.name}'")
        return 0
    local = not (address or os.environ.get("RAY_ADDRESS"))
    problem = port_problem(settings.host, settings.port) if local else None
    if problem:
        console.print_error(problem)
        return EXIT_INVALID
    haproxy = prepare_serve_env(settings.ingress) if local else None
    try:
        return _serve(args, uri, bundle, key, address, local=local, reload=reload, check=check)
    finally:
        if local:
            _stop_local_serve()
        stop_haproxy(haproxy)


def _stop_local_serve() -> None:
    """Shut Serve down (its HAProxy manager stops HAProxy) before the local Ray goes away."""
    import ray

    if ray.is_initialized():
        from ray import serve

        serve.shutdown()
        ray.shutdown()


def _serve(args, uri, bundle, key, address, *, local: bool, reload: bool, check: bool) -> int:
    deployment = start(args, bundle, address)
    rows, truth = sample_rows(bundle)
    console.print_summary(summary_rows(deployment, key), title=f"serving {bundle.label}")
    console.out.print("try it:\n  " + curl_line(deployment, key, rows))
    if check:
        from ray import serve

        ok = check_requests(deployment, key, rows, truth)
        serve.delete(args.name)
        console.err.print("removed the deployment")
        return 0 if ok else 1
    if not local and not reload:
        console.err.print("deployed to the cluster; `serve status` shows it")
        return 0
    return follow(deployment, uri, reload)
