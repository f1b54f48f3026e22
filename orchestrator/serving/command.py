"""``redblue deploy``'s command line (the work is :mod:`orchestrator.serving.deploy`'s)."""

from __future__ import annotations

from pathlib import Path

import typer

from orchestrator import console
from orchestrator.exit_codes import EXIT_FAILED, EXIT_INVALID


def deploy(
    model: str = typer.Argument(
        ...,
        help="models:/NAME@ALIAS (e.g. models:/digits@champion), models:/NAME/VERSION or "
        "runs:/RUN_ID/model.",
    ),
    config: Path | None = typer.Option(
        None, "--config", "-c", help="YAML config whose serve section applies (default: defaults)."
    ),
    overrides: list[str] = typer.Option(
        [], "--set", "-s", help="Override a config key: --set serve.port=9000 (repeatable)."
    ),
    address: str | None = typer.Option(
        None, help="Ray cluster address; default: $RAY_ADDRESS, else a local Ray on 127.0.0.1."
    ),
    emit_config: Path | None = typer.Option(
        None, "--emit-config", help="Write a Serve config file (serve deploy, RayService) and exit."
    ),
    reload: bool = typer.Option(
        False, "--reload", help="Stay and roll the replicas to each new version of the alias."
    ),
    canary: str | None = typer.Option(
        None,
        "--canary",
        help="A second model (same inputs) that answers --canary-percent of the requests; "
        "each answer names the version that made it.",
    ),
    canary_percent: float | None = typer.Option(
        None, "--canary-percent", min=0, max=100, help="The canary's share, in percent [10]."
    ),
    check: bool = typer.Option(
        False, "--check", help="Send a few requests, print the answers, then remove the deployment."
    ),
    show_key: bool = typer.Option(
        False,
        "--show-key",
        help="Print the key kept in ~/.redblue/api-key (generated when no key is provided); "
        "without it, only the file's path is printed.",
    ),
    as_json: bool = typer.Option(
        False,
        "--json",
        help="One JSON object on stdout (endpoint, model, key source; --check's outcome), "
        "printed once it serves; the rest on stderr.",
    ),
) -> None:
    """Serve MODEL on Ray Serve behind an authenticated HTTP API (POST /v1/predict; a GAN's
    /v1/generate).

    With a local Ray it serves in the foreground until Ctrl-C; with a cluster address it deploys
    and returns. Deploying again rolls the replicas to the new model without downtime.

    Keys: $REDBLUE_API_KEY (several separated by commas) or $REDBLUE_API_KEY_FILE (one per
    line), each of at least 32 hex digits or 22 base64url characters; else one is generated.
    """
    from orchestrator.environment import prepare_driver_env

    if as_json:
        console.use_json()
    prepare_driver_env(address)
    from orchestrator.config import ConfigError, defaults_with, load_config
    from orchestrator.serving.api_keys import ApiKeyError, obtain_keys
    from orchestrator.serving.application import CanaryError, servable
    from orchestrator.serving.model_source import ModelSourceError, parse_model_uri, resolve_bundle
    from serve_apps.model_bundle import ModelTooLarge, RuntimeChoiceError
    from trainers.export.onnx_graph import ExportError

    try:
        cfg = load_config(config, overrides) if config else defaults_with(overrides)
        if canary_percent is not None and canary is None:
            raise ConfigError("--canary-percent needs --canary MODEL")
        uris = [parse_model_uri(text) for text in (model, canary) if text]
        keys = obtain_keys(cfg.serve.api_key_env)
        served = servable([resolve_bundle(uri) for uri in uris], cfg.serve)
    except (
        ConfigError,
        ModelSourceError,
        ApiKeyError,
        RuntimeChoiceError,
        ModelTooLarge,
        CanaryError,
    ) as exc:
        console.finish(*console.refused(EXIT_INVALID, str(exc)), as_json)
    except ExportError as exc:
        message = f"{model}: serve.runtime onnxruntime: {exc}"
        console.finish(*console.refused(EXIT_FAILED, message), as_json)
    from orchestrator.serving.deploy import run as run_deploy

    code, result = run_deploy(
        cfg.serve,
        uris[0],
        served[0],
        address,
        canary=served[1] if len(served) == 2 else None,
        canary_percent=10.0 if canary_percent is None else canary_percent,
        keys=keys,
        emit_config=emit_config,
        reload=reload,
        check=check,
        show_key=show_key,
        as_json=as_json,
    )
    console.finish(code, result, as_json and result is not None)
