"""The test part T a model was scored on: its run's config (``config.yaml``, as MLflow holds it),
its data read and split again the same way (the split is a function of the config's seed)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import yaml

from orchestrator.config import validate
from serve_apps.model_bundle import ModelBundle
from trainers.dataset import Dataset, Split

CONFIG_ARTIFACT = "config.yaml"


class SourceDataError(ValueError):
    """The model's run has no config, or its data cannot be read again here."""


def run_data(bundle: ModelBundle) -> tuple[Dataset, Split]:
    """The data and split of the run that trained ``bundle`` (in memory, whatever
    ``data.streaming`` it trained with)."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from orchestrator.config import ConfigError
    from orchestrator.tracking import tracking_uri
    from trainers.errors import DataError
    from trainers.loop.plan import plan_run

    if not bundle.run_id:
        raise SourceDataError(f"{bundle.label} is not linked to a run: its test data is unknown")
    client = MlflowClient(tracking_uri())
    with tempfile.TemporaryDirectory(prefix="redblue-export-") as scratch:
        try:
            path = client.download_artifacts(bundle.run_id, CONFIG_ARTIFACT, scratch)
        except (MlflowException, OSError) as exc:
            raise SourceDataError(
                f"run {bundle.run_id} of {bundle.label} holds no {CONFIG_ARTIFACT}: {exc}"
            ) from None
        tree = yaml.safe_load(Path(path).read_text()) or {}
    tree.setdefault("data", {})["streaming"] = "off"
    try:
        cfg = validate(tree, origin=f"the config of run {bundle.run_id}")
        plan = plan_run(cfg)
    except (ConfigError, DataError, OSError) as exc:
        raise SourceDataError(
            f"cannot read the test data of {bundle.label} again (from its run's config): {exc}"
        ) from None
    return plan.dataset, plan.split
