"""Which sweep ``redblue sweep CONFIG --resume`` continues.

The parent MLflow run (tag ``redblue.kind=sweep``) is also the sweep's resume record: its tags
hold the Tune experiment folder and a hash of the config, so ``--resume`` finds the unfinished
sweep of the same config, and Tune restores its trials, searcher and scheduler state from that
folder. Restoring unpickles Tune's state files, and tags can be written by anyone who reaches the
tracking server: so the folder is never taken from the tag, but rebuilt from ``run.storage_path``
and the sweep's id, and a tag that names any other folder is refused (:func:`sweep_folder`).
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from orchestrator import storage
from orchestrator.config import RedblueConfig


class NothingToResume(Exception):
    """``--resume`` found no unfinished sweep of this config."""


def config_hash(cfg: RedblueConfig) -> str:
    text = json.dumps(cfg.model_dump(exclude={"run"}), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def find_unfinished(client, cfg: RedblueConfig, kind: str = "sweep") -> Any:
    """The latest parent run of this experiment (a ``sweep`` or a ``compare``) that did not
    end."""
    experiment = client.get_experiment_by_name(cfg.name)
    runs = client.search_runs(
        [experiment.experiment_id] if experiment else [],
        filter_string=f"tags.`redblue.kind` = '{kind}' and attributes.status = 'RUNNING'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    if not runs:
        raise NothingToResume(f"no unfinished {kind} in experiment '{cfg.name}' to resume")
    run = runs[0]
    if run.data.tags.get("redblue.config_hash") != config_hash(cfg):
        raise NothingToResume(
            f"the unfinished {kind} {run.data.tags.get('redblue.sweep_id')} was started with a "
            "different config; resume it with the same file and options (--set, and for a "
            "comparison --seeds and --strategies)"
        )
    return run


def sweep_folder(run, cfg: RedblueConfig, kind: str) -> tuple[str, str]:
    """The (sweep id, folder) of the unfinished parent ``run`` that ``--resume`` may restore: the
    folder under ``cfg.run.storage_path`` named after the sweep id, which must be one this code
    makes for ``cfg`` and ``kind``, and which the run's ``redblue.sweep_path`` tag must name.
    Raises :class:`NothingToResume` (nothing is read from the folder) otherwise."""
    sweep_id = run.data.tags.get("redblue.sweep_id", "")
    tagged = run.data.tags.get("redblue.sweep_path", "")
    if not re.fullmatch(re.escape(f"{cfg.name}-{kind}-") + r"\d{8}-\d{6}", sweep_id):
        raise NothingToResume(
            f"refusing to resume MLflow run {run.info.run_id}: its redblue.sweep_id "
            f"{sweep_id[:80]!r} is not a {kind} id of experiment '{cfg.name}'"
        )
    folder = storage.join(cfg.run.storage_path, sweep_id)
    if tagged.rstrip("/") != folder.rstrip("/"):
        raise NothingToResume(
            f"refusing to resume {kind} {sweep_id}: its MLflow tag redblue.sweep_path names "
            f"{tagged[:200]!r}, not {folder} (run.storage_path and the {kind} id); Tune's state "
            "is only restored from there. Resume with the run.storage_path the sweep started with"
        )
    return sweep_id, folder
