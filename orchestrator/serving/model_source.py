"""Which model to serve: parse a model URI and fetch its weights and config from MLflow.

Accepted: ``models:/NAME@ALIAS``, ``models:/NAME/VERSION``, ``runs:/RUN_ID/PATH`` and the logged
model's own ``models:/m-ID`` (what ``redblue train`` prints). An alias is resolved to the version
it points at now, so every replica serves the same weights.
"""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from serve_apps.model_bundle import ModelBundle
from trainers.models import WEIGHTS_FILE

NAME = r"[A-Za-z0-9][A-Za-z0-9_.-]*"
PATTERNS = {
    "logged": re.compile(r"^models:/(?P<model_id>m-[0-9a-f]{32})$"),
    "alias": re.compile(rf"^models:/(?P<name>{NAME})@(?P<alias>[A-Za-z0-9_-]+)$"),
    "version": re.compile(rf"^models:/(?P<name>{NAME})/(?P<version>[0-9]+)$"),
    "run": re.compile(r"^runs:/(?P<run_id>[0-9a-f]{32})/(?P<path>[A-Za-z0-9_./-]+)$"),
}


class ModelSourceError(ValueError):
    """The model URI is malformed or names nothing in the tracking store."""


@dataclass(frozen=True)
class ModelURI:
    text: str
    kind: str  # logged, alias, version or run
    parts: dict[str, str]


def parse_model_uri(text: str) -> ModelURI:
    """Check the URI's shape (no tracking store needed)."""
    for kind, pattern in PATTERNS.items():
        match = pattern.match(text.strip())
        if match:
            return ModelURI(text.strip(), kind, match.groupdict())
    raise ModelSourceError(
        f"model {text!r} is not a model URI; use models:/NAME@ALIAS (e.g. models:/digits@champion)"
        ", models:/NAME/VERSION, runs:/RUN_ID/model or models:/m-ID"
    )


def resolve_bundle(uri: ModelURI) -> ModelBundle:
    """Look the model up in MLflow and download its weights and model config."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from orchestrator.evaluation import own_test_metrics
    from orchestrator.tracking import fetch_final_model, tracking_uri

    store = tracking_uri()
    client = MlflowClient(store)
    with tempfile.TemporaryDirectory(prefix="redblue-model-") as scratch:
        try:
            name, version, run_id, fetch_uri = _identify(client, uri)
            run = client.get_run(run_id)
            directory = fetch_final_model(fetch_uri, Path(scratch))
        except MlflowException as exc:
            raise ModelSourceError(
                f"{uri.text}: {_first_line(exc)} (tracking store {store})"
            ) from None
        if not (directory / WEIGHTS_FILE).is_file():
            raise ModelSourceError(
                f"{uri.text} holds no final_model/{WEIGHTS_FILE}: not a model logged by redblue"
            )
        metrics = own_test_metrics(run.data.metrics)
        return ModelBundle.from_directory(
            directory,
            uri=fetch_uri,
            name=name,
            version=version,
            run_id=run_id,
            test_metrics=metrics,
        )


def _identify(client, uri: ModelURI) -> tuple[str, str | None, str, str]:
    """(registered name, version, run id, a URI that pins exactly this model)."""
    parts = uri.parts
    if uri.kind == "logged":
        logged = client.get_logged_model(parts["model_id"])
        if not logged.source_run_id:
            raise ModelSourceError(f"{uri.text}: the logged model is not linked to a run")
        experiment = client.get_experiment(logged.experiment_id)
        return experiment.name, None, logged.source_run_id, uri.text
    if uri.kind == "run":
        run = client.get_run(parts["run_id"])
        experiment = client.get_experiment(run.info.experiment_id)
        return experiment.name, None, parts["run_id"], uri.text
    if uri.kind == "alias":
        found = client.get_model_version_by_alias(parts["name"], parts["alias"])
    else:
        found = client.get_model_version(parts["name"], parts["version"])
    name, version = parts["name"], str(found.version)
    if not found.run_id:
        raise ModelSourceError(f"{uri.text}: version {version} is not linked to a run")
    return name, version, found.run_id, f"models:/{name}/{version}"


def _first_line(exc: Exception) -> str:
    message = getattr(exc, "message", None) or str(exc)
    return message.strip().splitlines()[0]
