"""``redblue deploy``: run a registered model on Ray Serve, roll it to new versions, or describe it.

With a local Ray the command serves in the foreground until Ctrl-C; with ``RAY_ADDRESS`` it deploys
to the cluster and returns. Serve's side (start, roll out, follow an alias) is in
:mod:`orchestrator.serving.rollout`; the summary and ``--check`` in
:mod:`orchestrator.serving.check`.
"""

from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path
from typing import Any

import yaml

from orchestrator import console
from orchestrator.exit_codes import EXIT_FAILED, EXIT_INVALID, EXIT_OK
from orchestrator.serving.api_keys import ApiKeys, remove_from_environment
from orchestrator.serving.application import DeployArgs, serve_config
from orchestrator.serving.check import check_inputs, check_requests, curl_line, summary_rows
from orchestrator.serving.ingress import prepare_serve_env, stop_haproxy
from orchestrator.serving.model_source import ModelURI
from orchestrator.serving.rollout import ClusterTlsError, follow, start
from orchestrator.serving.tls import absolute, tls_problem
from serve_apps.model_bundle import ModelBundle
from serve_apps.requests import form_for
from serve_apps.settings import ServeSection


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


def audit_path(configured: str, local: bool) -> str | None:
    """The audit log the replicas write: None when ``off``. A local deploy resolves a relative
    path from the working directory and checks it can be written; a deploy to a cluster passes
    it on, for each replica to resolve on its own node (``serve_apps.audit_log.audit_log_at``).

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
    canary: ModelBundle | None = None,
    canary_percent: float = 10.0,
    emit_config: Path | None = None,
    reload: bool = False,
    check: bool = False,
    show_key: bool = False,
    as_json: bool = False,
) -> tuple[int, dict[str, Any] | None]:
    """The whole command; returns its exit code (2 when the port is taken before Ray starts)
    and what ``--json`` prints at the end (None: printed already, as a foreground deployment
    prints it once it serves).

    ``keys`` were read already; they leave this process's environment here, before Ray starts.
    """
    remove_from_environment(settings.api_key_env)
    local = not (address or os.environ.get("RAY_ADDRESS") or emit_config)
    try:
        audit_log = audit_path(settings.audit_log, local)
    except AuditLogError as exc:
        return console.refused(EXIT_INVALID, str(exc))
    if local and settings.tls_cert and settings.tls_key:
        # A cluster's proxies read the paths on their own nodes; a local deploy checks them here.
        cert, key = absolute(settings.tls_cert), absolute(settings.tls_key)
        problem = tls_problem(cert, key)
        if problem:
            return console.refused(EXIT_INVALID, problem)
        settings = settings.model_copy(update={"tls_cert": cert, "tls_key": key})
    args = DeployArgs(
        model=bundle.uri,
        name=bundle.name,
        serve=settings,
        key_digests=keys.digests,
        audit_log=audit_log,
        canary=canary.uri if canary else None,
        canary_percent=canary_percent,
    )
    if emit_config:
        write_config(args, emit_config)
        console.out.print(f"wrote {emit_config}: {bundle.label} as Serve application '{args.name}'")
        return EXIT_OK, {"config": str(emit_config), "application": args.name, **about(bundle)}
    problem = port_problem(settings.host, settings.port) if local else None
    if problem:
        return console.refused(EXIT_INVALID, problem)
    tls = (settings.tls_cert, settings.tls_key) if settings.tls_cert and settings.tls_key else None
    haproxy = (
        prepare_serve_env(settings.ingress, port=settings.port, host=settings.host, tls=tls)
        if local
        else None
    )
    try:
        modes = {"local": local, "reload": reload, "check": check, "show": show_key}
        return _serve(args, uri, (bundle, canary), keys, address, as_json=as_json, **modes)
    finally:
        if local:
            _stop_local_serve()
        stop_haproxy(haproxy)


def _stop_local_serve(grace_s: float = 8.0) -> None:
    """Shut Serve down (its HAProxy manager stops HAProxy), then the local Ray, within
    ``grace_s``; then end whatever process of theirs is left. A signal to the whole process group
    (a terminal's Ctrl-C, ``kill -- -PGID``) reaches Ray's own processes too, and Serve's shutdown
    would then wait minutes for a controller that is gone."""
    import threading

    import psutil
    import ray

    if not ray.is_initialized():
        return

    def shut_down() -> None:
        from ray import serve

        processes = _alive(psutil.Process().children(recursive=True))
        if any(_named(p, "gcs_server") for p in processes):  # else Ray is gone already
            serve.shutdown()
        ray.shutdown()

    stopping = threading.Thread(target=shut_down, daemon=True)
    # Serve's controller ends its own graceful shutdown with ray.kill, and Ray's threads in this
    # process then print "(raylet) Task ServeController.graceful_shutdown failed ..." for a
    # shutdown that went as planned: what Ray prints while it stops is not shown.
    with (
        open(os.devnull, "w") as hidden,
        contextlib.redirect_stdout(hidden),
        contextlib.redirect_stderr(hidden),
    ):
        stopping.start()
        stopping.join(grace_s)
    if stopping.is_alive():
        console.print_warning(f"Serve and Ray did not stop within {grace_s:g} s; ending them")
        import atexit

        atexit.unregister(ray.shutdown)  # it would wait for the same processes again at exit
    for process in _alive(psutil.Process().children(recursive=True)):  # the local Ray's own
        with contextlib.suppress(psutil.Error):
            process.kill()


def _named(process, name: str) -> bool:
    import psutil

    with contextlib.suppress(psutil.Error):
        return bool(process.name() == name)
    return False


def _alive(processes: list) -> list:
    import psutil

    found = []
    for process in processes:
        with contextlib.suppress(psutil.Error):
            if process.status() != psutil.STATUS_ZOMBIE:
                found.append(process)
    return found


def _serve(
    args, uri, models, keys, address, *, local, reload, check, show, as_json
) -> tuple[int, dict[str, Any] | None]:
    bundle, canary = models
    try:
        deployment = start(args, bundle, address, canary)
    except ClusterTlsError as exc:
        return console.refused(EXIT_INVALID, str(exc))
    sample, form = check_inputs(bundle), form_for(bundle.spec)
    rows = summary_rows(deployment, keys, show, form.route)
    console.print_summary(rows, title=f"serving {bundle.label}")
    first = form.body(sample.inputs[:1], 4)
    console.out.print("try it:\n  " + curl_line(deployment, keys, first, form.route))
    served = {
        "endpoint": f"{deployment.url}{form.route}",
        "url": deployment.url,
        "application": args.name,
        **about(bundle),
        "api_key": keys.describe(),
    }
    if canary is not None:
        served["canary"] = {**about(canary), "percent": args.canary_percent}
    if check:
        from ray import serve

        ok = check_requests(deployment, keys, form, sample)
        serve.delete(args.name)
        console.err.print("removed the deployment")
        return (EXIT_OK if ok else EXIT_FAILED), {**served, "checked": ok}
    if not local and not reload:
        console.err.print("deployed to the cluster; `serve status` shows it")
        return EXIT_OK, served
    if as_json:  # it serves until Ctrl-C: a script reads where, now
        console.print_result(served, EXIT_OK)
    return follow(deployment, uri, reload), None


def about(bundle: ModelBundle) -> dict[str, Any]:
    """The deployed model, for ``--json``."""
    return {"model": bundle.label, "model_uri": bundle.uri, "run_id": bundle.run_id}
