"""The body of one Tune trial: a full Ray Train run of the sampled config.

In Ray 2.60 (Train v2) a ``TorchTrainer`` cannot be handed to ``Tuner``; the trial is a function
that builds the trainer and forwards its reports to Tune with ``TuneReportCallback``. The Train
run is named after the trial, so a trial restarted after the sweep's driver died resumes from
its own latest Ray Train checkpoint.
"""

from __future__ import annotations

from typing import Any

from ray import tune
from ray.tune.integration.ray_train import TuneReportCallback

from orchestrator import storage
from orchestrator.config import RedblueConfig
from orchestrator.launch import build_trainer
from orchestrator.plan import plan_run

TRIALS_DIR = "trials"


def trial_run_name(trial_id: str) -> str:
    return f"trial-{trial_id}"


def run_trial(params: dict[str, Any], base_config: dict[str, Any], sweep_dir: str) -> None:
    """Train ``base_config`` with the sampled ``params`` (dotted keys) applied."""
    cfg = RedblueConfig.model_validate(base_config).with_values(params)
    trial_id = tune.get_context().get_trial_id()
    trainer = build_trainer(
        cfg,
        plan_run(cfg),
        None,
        name=trial_run_name(trial_id),
        storage_path=storage.join(sweep_dir, TRIALS_DIR),
        callbacks=[TuneReportCallback()],
    )
    trainer.fit()
