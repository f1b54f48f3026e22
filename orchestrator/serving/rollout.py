"""Serve's side of a deploy: start Serve, deploy a model or roll to a new one, follow an alias.

Deploying again rolls the replicas to the new model while traffic flows (Serve starts the new
replicas, then drains the old ones); ``--reload`` keeps watching the alias and rolls on every new
version that takes the same inputs as the served one.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass

from orchestrator import console
from orchestrator.environment import interrupt_on_sigterm
from orchestrator.serving.application import DeployArgs, application
from orchestrator.serving.model_source import ModelURI, resolve_bundle
from serve_apps.model_bundle import ModelBundle
from serve_apps.settings import ServeSection
from trainers.log_level import library_log_level


@dataclass(frozen=True)
class Deployment:
    """What was deployed where, and how to call it."""

    args: DeployArgs
    bundle: ModelBundle
    url: str
    canary: ModelBundle | None = None  # answering args.canary_percent of the requests


def start(
    args: DeployArgs, bundle: ModelBundle, address: str | None, canary: ModelBundle | None = None
) -> Deployment:
    """Start Serve (HTTP on serve.host:serve.port) and deploy, or roll to, ``bundle`` (and
    ``canary`` beside it)."""
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
        logging_config={"log_level": library_log_level(), "enable_access_log": False},
    )
    roll_out(args, bundle, canary)
    return Deployment(args, bundle, base_url(settings), canary)


def http_options(settings: ServeSection, *, local_haproxy: bool = False) -> dict:
    """Serve's HTTP options. With the HAProxy ingress of a local Ray, Serve listens on loopback
    (the replicas' own HTTP servers and its fallback proxy bind Serve's host) and the wrapper
    moves HAProxy's frontend to serve.host, with TLS when set
    (:func:`orchestrator.serving.ingress.prepare_serve_env`). Otherwise Serve's proxies bind
    serve.host and terminate TLS themselves."""
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


def roll_out(args: DeployArgs, bundle: ModelBundle, canary: ModelBundle | None = None) -> None:
    """Deploy ``bundle`` (and ``canary`` for ``args.canary_percent`` of the requests) under
    ``args.name``; an existing deployment is rolled without downtime."""
    from ray import serve

    beside = f" and canary {canary.label} ({args.canary_percent:g}%)" if canary else ""
    console.err.print(f"deploying {bundle.label}{beside} as Serve application '{args.name}' ...")
    serve.run(
        application(args, bundle, canary),
        name=args.name,
        route_prefix=args.serve.route_prefix,
        blocking=False,
    )


def follow(deployment: Deployment, uri: ModelURI, reload: bool) -> int:
    """Serve until Ctrl-C; with ``reload``, roll to each new version the alias points at."""
    from ray import serve

    args, settings = deployment.args, deployment.args.serve
    current, canary = deployment.bundle, deployment.canary
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
                current = _roll_if_moved(args, uri, current, refused, canary)
                if canary is not None and current.reference == canary.reference:
                    canary, args = None, args.model_copy(update={"canary": None})
    except KeyboardInterrupt:
        console.err.print("stopping ...")
        serve.delete(deployment.args.name)
        return 0


def _roll_if_moved(
    args: DeployArgs,
    uri: ModelURI,
    current: ModelBundle,
    refused: set[str] | None = None,
    canary: ModelBundle | None = None,
) -> ModelBundle:
    """Roll to the version ``uri`` points at now, unless it is the one served or its input
    schema differs from the served one's (its clients would get 422 on every request): then
    keep serving ``current`` and say why (once per version when ``refused`` is given). A
    ``canary`` stays beside the new version, unless it is the new version (it was promoted):
    then that version alone takes every request."""
    from orchestrator.registry import FeatureSchema, schema_changes
    from orchestrator.serving.model_source import ModelSourceError

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
    try:
        latest = latest.bounded(args.serve.max_parameters).for_runtime(args.serve.runtime)
    except ValueError as exc:  # ModelTooLarge, RuntimeChoiceError, ExportError
        console.print_error(f"v{latest.version} not rolled: {exc}; still serving {current.label}")
        return current
    if canary is not None and latest.reference == canary.reference:
        console.err.print(f"the canary {canary.label} is {uri.text} now: it takes every request")
        roll_out(args.model_copy(update={"canary": None}), latest)
    else:
        roll_out(args, latest, canary)
    console.out.print(f"now serving {latest.label}")
    return latest
