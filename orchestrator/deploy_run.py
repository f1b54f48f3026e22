"""``redblue deploy``: run a registered model on Ray Serve, roll it to new versions, or describe it.

With a local Ray the command serves in the foreground until Ctrl-C; with ``RAY_ADDRESS`` it deploys
to the cluster and returns. Deploying again rolls the replicas to the new model while traffic flows
(Serve starts the new replicas, then drains the old ones); ``--reload`` keeps watching the alias and
rolls on every new version that takes the same inputs as the served one.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from orchestrator import console
from orchestrator.api_keys import ApiKeys, remove_from_environment
from orchestrator.environment import interrupt_on_sigterm, prepare_serve_env, stop_haproxy
from orchestrator.exit_codes import EXIT_INVALID
from orchestrator.model_source import ModelURI, resolve_bundle
from orchestrator.serve_app import DeployArgs, application, serve_config
from orchestrator.tls import absolute, client_verify, is_self_signed, tls_problem
from serve_apps.model_bundle import ModelBundle
from serve_apps.settings import ServeSection

CHECK_ROWS = 3


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
    if args.serve.tls:
        header += (
            "# http_options.ssl_*: Serve's proxies serve HTTPS with these files, which every\n"
            "# node must hold. Ray 2.60's HAProxy ingress (RAY_SERVE_ENABLE_HA_PROXY=1) takes no\n"
            "# certificate: on such a cluster terminate TLS in front, with serve.allow_plaintext.\n"
        )
    path.write_text(header + yaml.safe_dump(config, sort_keys=False))


def start(args: DeployArgs, bundle: ModelBundle, address: str | None) -> Deployment:
    """Start Serve (HTTP on serve.host:serve.port) and deploy, or roll to, ``bundle``."""
    from ray import serve

    from orchestrator.environment import connect_ray

    settings = args.serve
    replicas = settings.autoscaling.min_replicas if settings.autoscaling else settings.num_replicas
    connect_ray(address, replicas * settings.cpus_per_replica)
    if settings.tls and not _local(address) and _cluster_runs_haproxy():
        raise ClusterTlsError(
            "serve.tls_cert/tls_key: this cluster runs Ray Serve's HAProxy ingress "
            "(RAY_SERVE_ENABLE_HA_PROXY=1), which in Ray 2.60 takes no certificate; terminate "
            "TLS in front of it and set serve.allow_plaintext=true, or run the cluster with "
            "Serve's proxies"
        )
    logging.getLogger("ray.serve").setLevel(logging.WARNING)  # our own lines say what happens
    serve.start(
        http_options=http_options(settings, local_haproxy=_local_haproxy(address)),
        logging_config={"log_level": "WARNING", "enable_access_log": False},
    )
    roll_out(args, bundle)
    return Deployment(args, bundle, base_url(settings))


def http_options(settings: ServeSection, *, local_haproxy: bool = False) -> dict:
    """Serve's HTTP options. With the HAProxy ingress of a local Ray, Serve listens on loopback
    (the replicas' own HTTP servers and its fallback proxy bind Serve's host) and the launcher
    moves HAProxy's frontend to serve.host, with TLS when set (:func:`prepare_serve_env`).
    Otherwise Serve's proxies bind serve.host and terminate TLS themselves."""
    if local_haproxy:
        return {"host": "127.0.0.1", "port": settings.port}
    options: dict = {"host": settings.host, "port": settings.port}
    if settings.tls_cert and settings.tls_key:
        options.update(ssl_certfile=settings.tls_cert, ssl_keyfile=settings.tls_key)
    return options


class ClusterTlsError(RuntimeError):
    """TLS was asked of a cluster whose ingress cannot serve it."""


def _local(address: str | None) -> bool:
    return not (address or os.environ.get("RAY_ADDRESS"))


def _local_haproxy(address: str | None) -> bool:
    return _local(address) and os.environ.get("RAY_SERVE_ENABLE_HA_PROXY") == "1"


def _cluster_runs_haproxy() -> bool:
    """Whether the cluster's nodes run Serve's HAProxy ingress: read where Ray's workers run
    (they inherit the environment of ``ray start``)."""
    import ray

    @ray.remote(num_cpus=0)
    def ingress_setting() -> str | None:
        return os.environ.get("RAY_SERVE_ENABLE_HA_PROXY")

    return ray.get(ingress_setting.remote(), timeout=60) == "1"


def base_url(settings: ServeSection) -> str:
    """Where the API is: ``http(s)://host:port`` plus the route prefix (none for ``/``)."""
    prefix = "" if settings.route_prefix == "/" else settings.route_prefix
    scheme = "https" if settings.tls else "http"
    return f"{scheme}://{settings.host}:{settings.port}{prefix}"


def roll_out(args: DeployArgs, bundle: ModelBundle) -> None:
    """Deploy ``bundle`` under ``args.name``; an existing deployment is rolled without downtime."""
    from ray import serve

    console.err.print(f"deploying {bundle.label} as Serve application '{args.name}' ...")
    serve.run(
        application(args, bundle),
        name=args.name,
        route_prefix=args.serve.route_prefix,
        blocking=False,
    )


def follow(deployment: Deployment, uri: ModelURI, reload: bool) -> int:
    """Serve until Ctrl-C; with ``reload``, roll to each new version the alias points at."""
    from ray import serve

    settings = deployment.args.serve
    current = deployment.bundle
    refused: set[str] = set()  # versions not rolled to (another input schema), told once
    watched = reload and uri.kind == "alias"
    if watched:
        console.err.print(f"watching {uri.text} every {settings.reload_interval_s:g} s")
    console.err.print("serving; Ctrl-C (or SIGTERM) stops and removes the deployment")
    interrupt_on_sigterm()
    try:
        while True:
            time.sleep(settings.reload_interval_s if watched else 3600)
            if watched:
                current = _roll_if_moved(deployment.args, uri, current, refused)
    except KeyboardInterrupt:
        console.err.print("stopping ...")
        serve.delete(deployment.args.name)
        return 0


def _roll_if_moved(
    args: DeployArgs, uri: ModelURI, current: ModelBundle, refused: set[str] | None = None
) -> ModelBundle:
    """Roll to the version ``uri`` points at now, unless it is the one served or its input
    schema differs from the served one's (its clients would get 422 on every request): then
    keep serving ``current`` and say why (once per version when ``refused`` is given)."""
    from orchestrator.champion import FeatureSchema, schema_changes
    from orchestrator.model_source import ModelSourceError

    try:
        latest = resolve_bundle(uri)
    except ModelSourceError as exc:
        console.print_error(f"cannot check {uri.text}: {exc}; still serving {current.label}")
        return current
    if latest.version == current.version:
        return current
    changes = schema_changes(
        FeatureSchema.from_model_config(current.model_config),
        FeatureSchema.from_model_config(latest.model_config),
    )
    if changes:
        if refused is None or latest.version not in refused:
            from rich.markup import escape

            console.print_error(
                f"{uri.text} moved to v{latest.version}, whose inputs differ from the served "
                f"v{current.version}'s ({escape('; '.join(changes))}): not rolled, still serving "
                f"{current.label}; deploy it on purpose with redblue deploy "
                f"models:/{latest.name}/{latest.version}"
            )
        if refused is not None:
            refused.add(str(latest.version))
        return current
    console.err.print(f"{uri.text} moved from v{current.version} to v{latest.version}")
    roll_out(args, latest)
    console.out.print(f"now serving {latest.label}")
    return latest


def summary_rows(
    deployment: Deployment, keys: ApiKeys, show_key: bool = False
) -> list[tuple[str, str]]:
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
        ("openapi", f"{deployment.url}/openapi.json (key required; /docs too)"),
        ("health", f"{deployment.url}/healthz (the only route without a key)"),
        ("replicas", replicas),
        ("api key", keys.describe()),
        ("audit log", args.audit_log or "off"),
    ]
    cert = args.serve.tls_cert
    if cert:
        trust = " (self-signed: clients trust this file)" if is_self_signed(cert) else ""
        rows.append(("tls", f"HTTPS, certificate {cert}{trust}"))
    if show_key and keys.source in ("generated", "file"):
        rows.append(("the key", keys.first))
    return rows


def curl_line(deployment: Deployment, keys: ApiKeys, rows: np.ndarray) -> str:
    """A ready-to-paste curl command; the key is read from where it lives, never inlined."""
    secret = keys.shell_reference()
    body = json.dumps({"inputs": [rows[0].round(4).tolist()]})
    cert = deployment.args.serve.tls_cert
    trust = f"--cacert {shlex.quote(cert)} " if cert and is_self_signed(cert) else ""
    return (
        f"curl -s {trust}-H \"Authorization: Bearer {secret}\" -H 'Content-Type: application/json' "
        f"-d '{body}' {deployment.url}/v1/predict"
    )


def check_requests(
    deployment: Deployment, keys: ApiKeys, rows: np.ndarray, truth: list | None
) -> bool:
    """Send a few authenticated requests (single rows, then all at once) and print the answers;
    check that every key is accepted and that a request without one is refused."""
    import httpx

    headers = {"Authorization": f"Bearer {keys.first}"}
    cert = deployment.args.serve.tls_cert
    verify = client_verify(cert) if cert else True
    ok = True
    with httpx.Client(
        base_url=deployment.url, headers=headers, timeout=30, verify=verify
    ) as client:
        for index, row in enumerate(rows):
            response = client.post("/v1/predict", json={"inputs": [row.tolist()]})
            ok &= response.status_code == 200
            console.out.print(f"row {index}: HTTP {response.status_code}  {_answer(response)}")
        response = client.post("/v1/predict", json={"inputs": rows.tolist()})
        ok &= response.status_code == 200
        console.out.print(f"all {len(rows)} rows: HTTP {response.status_code}  {_answer(response)}")
        if truth is not None:
            console.out.print(f"true labels of these rows: {truth}")
        for value, ident in zip(keys.values, keys.ids, strict=True):
            info = client.get("/v1/model", headers={"Authorization": f"Bearer {value}"})
            ok &= info.status_code == 200
            console.out.print(f"key {ident}: HTTP {info.status_code} for /v1/model")
        anonymous = httpx.get(f"{deployment.url}/v1/model", timeout=30, verify=verify)
        ok &= anonymous.status_code == 401
        console.out.print(f"no key: HTTP {anonymous.status_code} for /v1/model")
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


def audit_path(configured: str, local: bool) -> str | None:
    """The audit log the replicas write: None when ``off``. A local deploy resolves a relative
    path from the working directory and checks it can be written; a deploy to a cluster passes
    it on, for each replica to resolve on its own node (``serve_apps.guard.audit_log_at``).

    Raises AuditLogError when a local path cannot be written.
    """
    from orchestrator.environment import state_root

    if configured.lower() == "off":
        return None
    if not local:
        return configured
    path = (state_root() / os.path.expanduser(configured)).resolve()
    if path.is_dir():
        raise AuditLogError(f"serve.audit_log {configured}: {path} is a directory; name a file")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))
    except OSError as exc:
        raise AuditLogError(
            f"serve.audit_log {configured}: cannot write {path}: {exc.strerror}"
        ) from None
    return str(path)


class AuditLogError(ValueError):
    """serve.audit_log names a file this deploy cannot write."""


def run(
    settings: ServeSection,
    uri: ModelURI,
    bundle: ModelBundle,
    address: str | None,
    *,
    keys: ApiKeys,
    emit_config: Path | None = None,
    reload: bool = False,
    check: bool = False,
    show_key: bool = False,
) -> int:
    """The whole command; returns its exit code (2 when the port is taken before Ray starts).

    ``keys`` were read already; they leave this process's environment here, before Ray starts.
    """
    remove_from_environment(settings.api_key_env)
    local = not (address or os.environ.get("RAY_ADDRESS") or emit_config)
    try:
        audit_log = audit_path(settings.audit_log, local)
    except AuditLogError as exc:
        console.print_error(str(exc))
        return EXIT_INVALID
    if local and settings.tls_cert and settings.tls_key:
        # A cluster's proxies read the paths on their own nodes; a local deploy checks them here.
        cert, key = absolute(settings.tls_cert), absolute(settings.tls_key)
        problem = tls_problem(cert, key)
        if problem:
            console.print_error(problem)
            return EXIT_INVALID
        settings = settings.model_copy(update={"tls_cert": cert, "tls_key": key})
    args = DeployArgs(
        model=bundle.uri,
        name=bundle.name,
        serve=settings,
        key_digests=keys.digests,
        audit_log=audit_log,
    )
    if emit_config:
        write_config(args, emit_config)
        console.out.print(f"wrote {emit_config}: {bundle.label} as Serve application '{args.name}'")
        return 0
    problem = port_problem(settings.host, settings.port) if local else None
    if problem:
        console.print_error(problem)
        return EXIT_INVALID
    tls = (settings.tls_cert, settings.tls_key) if settings.tls_cert and settings.tls_key else None
    haproxy = (
        prepare_serve_env(settings.ingress, port=settings.port, host=settings.host, tls=tls)
        if local
        else None
    )
    try:
        return _serve(
            args, uri, bundle, keys, address, local=local, reload=reload, check=check, show=show_key
        )
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


def _serve(
    args, uri, bundle, keys, address, *, local: bool, reload: bool, check: bool, show: bool
) -> int:
    try:
        deployment = start(args, bundle, address)
    except ClusterTlsError as exc:
        console.print_error(str(exc))
        return EXIT_INVALID
    rows, truth = sample_rows(bundle)
    console.print_summary(summary_rows(deployment, keys, show), title=f"serving {bundle.label}")
    console.out.print("try it:\n  " + curl_line(deployment, keys, rows))
    if check:
        from ray import serve

        ok = check_requests(deployment, keys, rows, truth)
        serve.delete(args.name)
        console.err.print("removed the deployment")
        return 0 if ok else 1
    if not local and not reload:
        console.err.print("deployed to the cluster; `serve status` shows it")
        return 0
    return follow(deployment, uri, reload)
