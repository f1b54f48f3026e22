"""Building the Serve application for a model, and the Serve config file that describes it.

``redblue deploy`` calls :func:`application` with a model it already fetched. A Serve config file
(``redblue deploy --emit-config``; ``serve deploy``; a KubeRay RayService) names :func:`app` as
its ``import_path``: Serve calls it on the cluster with the file's ``args``, and it fetches the
model from MLflow there. Either way, each replica gets the weights, the settings and the digests
of the accepted API keys, never a key.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from serve_apps.model_bundle import ModelBundle
from serve_apps.settings import ServeSection
from trainers.log_level import library_log_level

IMPORT_PATH = "orchestrator.serving.application:app"


class DeployArgs(BaseModel):
    """Everything a Serve application of Redblue is built from (the ``args`` of a config file)."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(
        description="models:/NAME/VERSION, models:/NAME@ALIAS or runs:/RUN_ID/model."
    )
    name: str = Field(description="Serve application name.")
    serve: ServeSection = Field(default_factory=ServeSection)
    key_digests: list[Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]] = Field(
        min_length=1, description="SHA-256 hex digests of the accepted API keys."
    )
    audit_log: str | None = Field(
        None,
        description="The audit log's path (a relative one is taken from ~/.redblue on each "
        "replica's node); none: off.",
    )
    canary: str | None = Field(
        None, description="A second model, answering canary_percent of the requests."
    )
    canary_percent: float = Field(
        10.0, ge=0.0, le=100.0, description="The canary's share of the requests, in percent."
    )


def application(args: DeployArgs, bundle: ModelBundle, canary: ModelBundle | None = None):
    """The bound Serve application serving ``bundle`` with ``args.serve``'s settings, and
    ``canary`` beside it for ``args.canary_percent`` of the requests."""
    from serve_apps.predictor import ModelServer

    settings = args.serve
    options: dict[str, Any] = {
        "max_ongoing_requests": settings.max_ongoing_requests,
        "ray_actor_options": {"num_cpus": settings.cpus_per_replica},
        # The audit log records every request; Serve's own access log would double the cost.
        "logging_config": {"enable_access_log": False, "log_level": library_log_level()},
    }
    if settings.autoscaling:
        options["autoscaling_config"] = {
            **settings.autoscaling.model_dump(),
            "initial_replicas": settings.autoscaling.min_replicas or 1,
            # Serve's defaults wait for 30 s of load; react within seconds instead.
            "upscale_delay_s": 3.0,
            "metrics_interval_s": 1.0,
            "look_back_period_s": 5.0,
        }
    else:
        options["num_replicas"] = settings.num_replicas
    if (settings.autoscaling.min_replicas if settings.autoscaling else settings.num_replicas) <= 1:
        # Serve replaces replicas one by one while the others answer; a lone replica must have
        # its successor running first, or a new version means downtime.
        options["max_surge_percent"] = 100
    deployment: Any = ModelServer  # a serve.Deployment, which mypy does not see
    return deployment.options(**options).bind(
        bundle, settings, args.key_digests, args.audit_log, canary, args.canary_percent
    )


def app(args: dict[str, Any]):
    """Serve application builder for config files: fetches ``args["model"]`` from MLflow."""
    from orchestrator.serving.model_source import parse_model_uri, resolve_bundle

    parsed = DeployArgs.model_validate(args)
    uris = [parse_model_uri(uri) for uri in (parsed.model, parsed.canary) if uri]
    return application(parsed, *servable([resolve_bundle(uri) for uri in uris], parsed.serve))


class CanaryError(ValueError):
    """The canary cannot answer the champion's requests."""


def servable(bundles: list[ModelBundle], settings: ServeSection) -> list[ModelBundle]:
    """The champion (and a canary) within ``serve.max_parameters``, for ``serve.runtime``;
    CanaryError when the canary would not answer the champion's requests."""
    served = [b.bounded(settings.max_parameters).for_runtime(settings.runtime) for b in bundles]
    problem = canary_problem(*served) if len(served) == 2 else None
    if problem:
        raise CanaryError(problem)
    return served


def canary_problem(champion: ModelBundle, canary: ModelBundle) -> str | None:
    """Why ``canary`` cannot answer ``champion``'s requests (another task or other inputs: its
    share of the clients would get errors), or None."""
    from orchestrator.registry import FeatureSchema, schema_changes
    from trainers.tasks import task_for

    ours, theirs = (task_for(b.spec).kind for b in (champion, canary))
    if (ours, champion.spec.task) != (theirs, canary.spec.task):
        return (
            f"canary {canary.label} is a {theirs} model for {canary.spec.task} and "
            f"{champion.label} a {ours} model for {champion.spec.task}: a canary answers the "
            "same requests"
        )
    changes = schema_changes(
        FeatureSchema.from_model_config(champion.model_config),
        FeatureSchema.from_model_config(canary.model_config),
    )
    if changes:
        return (
            f"canary {canary.label} takes other inputs than {champion.label} "
            f"({'; '.join(changes)}): a canary answers the same requests"
        )
    return None


def serve_config(args: DeployArgs, env_vars: dict[str, str]) -> dict[str, Any]:
    """A Serve config (``serve deploy`` / RayService ``serveConfigV2``) for ``args``."""
    from ray.serve.schema import ServeDeploySchema

    http_options: dict[str, Any] = {"host": args.serve.host, "port": args.serve.port}
    if args.serve.tls_cert and args.serve.tls_key:  # paths on the cluster's nodes
        http_options.update(ssl_certfile=args.serve.tls_cert, ssl_keyfile=args.serve.tls_key)
    config = {
        "proxy_location": "EveryNode",
        "http_options": http_options,
        "applications": [
            {
                "name": args.name,
                "route_prefix": args.serve.route_prefix,
                "import_path": IMPORT_PATH,
                "args": args.model_dump(mode="json"),
                "runtime_env": {"env_vars": env_vars} if env_vars else {},
            }
        ],
    }
    ServeDeploySchema.model_validate(config)  # what `serve deploy` checks first
    return config
