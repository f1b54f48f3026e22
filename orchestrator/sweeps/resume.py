"""Which sweep ``redblue sweep CONFIG --resume`` continues.

The parent MLflow run (tag ``redblue.kind=sweep``) is also the sweep's resume record: its tags
hold the Tune experiment folder and a hash of the config, so ``--resume`` finds the unfinished
sweep of the same config, and Tune restores its trials, searcher and scheduler state from that
folder.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

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
