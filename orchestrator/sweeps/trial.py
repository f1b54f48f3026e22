"""The body of one Tune trial: a full Ray Train run of the sampled config.

In Ray 2.60 (Train v2) a ``TorchTrainer`` cannot be handed to ``Tuner``; the trial is a function
that builds the trainer and forwards its reports to Tune. With ASHA or FIFO, Ray's
``TuneReportCallback`` forwards the metrics and the Train run is named after the trial, so a
trial restarted after the sweep's driver died resumes from its own latest Ray Train checkpoint.

Population-based training needs more: Tune must hold each trial's checkpoints, to hand the best
trials' to the worst. There the trial forwards every report with its checkpoint itself, and each
start of the trial is a new Train run that continues from the checkpoint Tune gives it (its own,
or a better trial's with perturbed values).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
import uuid
from typing import Any

import numpy as np
from ray import tune
from ray.exceptions import RayError
from ray.train.v2.api.callback import UserCallback
from ray.tune.integration.ray_train import CHECKPOINT_PATH_KEY, TuneReportCallback
from ray.util.queue import Queue

from orchestrator import storage
from orchestrator.config import RedblueConfig
from orchestrator.streaming.plan import describe, plan_trial
from orchestrator.sweeps.config import Presets, config_values
from orchestrator.training.launch import build_trainer
from trainers.loop.plan import RunPlan

TRIALS_DIR = "trials"


def trial_run_name(trial_id: str) -> str:
    return f"trial-{trial_id}"


def is_trial_run(folder_name: str, trial_id: str) -> bool:
    """Whether a Train run folder belongs to ``trial_id`` (PBT gives a trial one run per start)."""
    name = trial_run_name(trial_id)
    return folder_name == name or folder_name.startswith(f"{name}-")


def in_tune_trial_folder(path: str, trial_id: str) -> bool:
    """Whether ``path`` lies in Tune's own folder for ``trial_id`` (``<trainable>_<id>_<n>_...``),
    where it keeps the trial's checkpoint copies under population-based training."""
    return f"_{trial_id}_" in path


def run_trial(
    params: dict[str, Any],
    base_config: dict[str, Any],
    sweep_dir: str,
    presets: Presets | None = None,
    initial_state: dict[str, np.ndarray] | None = None,
) -> None:
    """Train ``base_config`` with the sampled ``params`` (dotted keys, or pseudo keys of
    ``presets``) applied, from ``initial_state`` (``model.init_from``'s weights) when given."""
    cfg = RedblueConfig.model_validate(base_config).with_values(config_values(params, presets))
    trial_id = tune.get_context().get_trial_id()
    storage_path = storage.join(sweep_dir, TRIALS_DIR)
    plan = dataclasses.replace(plan_trial(cfg), initial_state=initial_state)
    data_params = describe(plan).params  # for the trial's MLflow run, as a run records them
    if cfg.sweep.scheduler == "pbt":
        _run_population_member(cfg, plan, trial_id, storage_path, data_params)
        return
    trainer = build_trainer(
        cfg,
        plan,
        None,
        name=trial_run_name(trial_id),
        storage_path=storage_path,
        callbacks=[TuneReportCallback()],
        data_params=data_params,
    )
    trainer.fit()


class ForwardReports(UserCallback):
    """Runs in Ray Train's controller: puts each report and its checkpoint on ``reports``."""

    def __init__(self, reports: Queue) -> None:
        self.reports = reports

    def after_report(self, run_context, metrics, checkpoint) -> None:
        self.reports.put((metrics[0], checkpoint))


def _run_population_member(
    cfg: RedblueConfig,
    plan: RunPlan,
    trial_id: str,
    storage_path: str,
    data_params: dict[str, str],
) -> None:
    """One start of a PBT trial: a new Train run from the checkpoint Tune hands over, if any,
    whose reports reach Tune with their checkpoints (Tune keeps a copy of each)."""
    logging.getLogger("ray.train._internal.storage").setLevel(logging.WARNING)  # every copy
    start_from = tune.get_checkpoint()
    name = trial_run_name(trial_id)
    if start_from is not None:  # a run of its own: Train would prefer an older run's snapshot
        name = f"{name}-{uuid.uuid4().hex[:8]}"
    reports = Queue(actor_options={"num_cpus": 0})
    trainer = build_trainer(
        cfg,
        plan,
        None,
        name=name,
        storage_path=storage_path,
        callbacks=[ForwardReports(reports)],
        start_from=start_from,
        data_params=data_params,
    )
    failure: list[BaseException] = []

    def fit() -> None:
        try:
            trainer.fit()
        except BaseException as exc:  # re-raised in the trial's own thread below
            failure.append(exc)
        finally:
            with contextlib.suppress(RayError):  # Tune is stopping the trial: the queue is gone
                reports.put(None)

    fitting = threading.Thread(target=fit, name="redblue-fit", daemon=True)
    fitting.start()
    while (report := reports.get()) is not None:
        metrics, checkpoint = report
        if checkpoint is not None:
            metrics = {**metrics, CHECKPOINT_PATH_KEY: checkpoint.path}
            checkpoint = tune.Checkpoint(checkpoint.path, checkpoint.filesystem)
        tune.report(metrics, checkpoint=checkpoint)
    fitting.join()
    if failure:
        raise failure[0]
