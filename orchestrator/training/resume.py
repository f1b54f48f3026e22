"""``redblue train --resume RUN_ID``: continue a run whose driver died, in the same MLflow run
and the same Ray Train folder, from its last checkpoint (Ray Train finds the folder's checkpoints
by the run's name, as after a worker restart)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from orchestrator.config import RedblueConfig

CONFIG_ARTIFACT = "config.yaml"  # the run's resolved config, logged when it started
RESUMED_TAG = "redblue.resumed"  # how many times the run was continued


class ResumeError(ValueError):
    """The run cannot be continued: unknown, not a training, or finished."""


def resumable_config(run_id: str) -> Path:
    """The config the run started with (its ``config.yaml``, paths already absolute), in a
    temporary file; ResumeError when the run is not a redblue training that can go on."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from orchestrator.tracking import scratch_root, tracking_uri

    uri = tracking_uri()
    client = MlflowClient(uri)
    try:
        run = client.get_run(run_id)
    except MlflowException:
        raise ResumeError(f"--resume {run_id}: no such run in the tracking store {uri}") from None
    if run.data.tags.get("redblue.kind") != "train":
        raise ResumeError(f"--resume {run_id}: not a run of redblue train")
    if run.info.status == "FINISHED":
        raise ResumeError(f"--resume {run_id}: the run already finished")
    scratch = tempfile.mkdtemp(dir=scratch_root())
    try:
        return Path(client.download_artifacts(run_id, CONFIG_ARTIFACT, scratch))
    except (MlflowException, OSError) as exc:
        raise ResumeError(
            f"--resume {run_id}: its {CONFIG_ARTIFACT} cannot be read: {exc}"
        ) from None


def reopen(run_id: str, cfg: RedblueConfig):
    """The run, RUNNING again, its error (if the driver recorded one) cleared and its resume
    counted in the tag ``redblue.resumed``."""
    from orchestrator.tracking import TrackedRun

    tracked = TrackedRun(run_id, cfg.name)
    tags = tracked.client.get_run(run_id).data.tags
    tracked.client.update_run(run_id, status="RUNNING")
    if "redblue.error" in tags:
        tracked.client.delete_tag(run_id, "redblue.error")
    tracked.set_tag(RESUMED_TAG, str(int(tags.get(RESUMED_TAG, "0")) + 1))
    return tracked
