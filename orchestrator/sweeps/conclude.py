"""The end of a sweep: the best trial's config written, its model logged, registered and given
an alias by the champion rule (:mod:`orchestrator.registry`), the other trials' checkpoints
deleted."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from orchestrator import console, storage
from orchestrator.config import RedblueConfig
from orchestrator.environment import state_root
from orchestrator.sweeps.results import SweepSummary, TrialOutcome, log_results, rank
from trainers.loop.plan import RunPlan

BEST_CONFIG_FILE = "best_config.yaml"


def conclude(
    cfg: RedblueConfig,
    plan: RunPlan,
    parent,
    sweep_id: str,
    sweep_dir: str,
    trials: list[TrialOutcome],
    allow_schema_change: bool = False,
) -> SweepSummary:
    from orchestrator.registering import register_and_promote
    from orchestrator.tracking import TrackedRun, download_final_model

    ranked = rank(trials, cfg.sweep.metric, cfg.sweep.mode)
    best = ranked[0] if ranked and ranked[0].status == "FINISHED" else None
    log_results(cfg, parent, ranked)
    summary = SweepSummary(
        parent.run_id, sweep_id, ranked, best, None, None, None, "no trial finished", None
    )
    if best is None or not best.checkpoint_path:
        parent.fail("no trial finished")
        return summary
    from ray.train import Checkpoint

    best_cfg = cfg.with_values(best.params)
    best_yaml = yaml.safe_dump(best_cfg.training_dump(), sort_keys=False)
    summary.best_config_path = best_config_path(sweep_dir, sweep_id)
    summary.best_config_path.parent.mkdir(parents=True, exist_ok=True)
    summary.best_config_path.write_text(best_yaml)
    parent.client.log_text(parent.run_id, best_yaml, BEST_CONFIG_FILE)
    parent.client.log_batch(
        parent.run_id,
        params=_params({f"best.{k}": v for k, v in best.params.items()}),
    )
    parent.log_metrics({f"best.{k}": v for k, v in best.metrics.items()})
    parent.set_tag("redblue.best_run_id", best.run_id)

    model_dir = download_final_model(
        Checkpoint(storage.on_same_storage(best.checkpoint_path, sweep_dir))
    )
    summary.model_uri = TrackedRun(best.run_id, cfg.name).log_model(model_dir, plan.model_sample())
    log_reports(cfg, plan, sweep_dir, ranked, {best.run_id: model_dir})
    tags = {
        "redblue.run_id": best.run_id,
        "redblue.sweep_id": sweep_id,
        "redblue.sweep_run_id": parent.run_id,
    }
    registered = register_and_promote(
        parent.client,
        summary.model_uri,
        cfg.name,
        tags,
        model_dir,
        plan.dataset,
        plan.split,
        allow_schema_change=allow_schema_change,
    )
    if registered.score is not None:
        parent.log_metrics({f"champion_check.{registered.score.metric}": registered.score.value})
    parent.set_tag(
        "redblue.registered_version", f"{registered.version} ({registered.alias or 'no alias'})"
    )
    summary.version, summary.alias = registered.version, registered.alias
    summary.reason = registered.reason
    if not cfg.sweep.keep_all_checkpoints:
        delete_checkpoints(sweep_dir, keep=best.trial_id)
    parent.finish()
    return summary


def log_reports(
    cfg: RedblueConfig,
    plan: RunPlan,
    sweep_dir: str,
    trials: list[TrialOutcome],
    downloaded: dict[str, Path],
) -> None:
    """The evaluation report (``orchestrator.evaluation``) on every finished trial's run, from
    its final checkpoint; a trial whose checkpoint cannot be read is skipped with a warning."""
    from ray.train import Checkpoint

    from orchestrator.evaluation import log_evaluation
    from orchestrator.tracking import TrackedRun, download_final_model

    finished = [t for t in trials if t.status == "FINISHED" and t.checkpoint_path]
    console.err.print(f"evaluation report of {len(finished)} finished trial(s)")
    for trial in finished:
        try:
            model_dir = downloaded.get(trial.run_id) or download_final_model(
                Checkpoint(storage.on_same_storage(str(trial.checkpoint_path), sweep_dir))
            )
            log_evaluation(TrackedRun(trial.run_id, cfg.name), model_dir, plan)
        except Exception as exc:  # a report is not worth failing the sweep for
            console.print_warning(f"no evaluation report for trial {trial.trial_id}: {exc}")


def _params(values: dict[str, Any]) -> list:
    from mlflow.entities import Param

    return [Param(k, str(v)) for k, v in values.items()]


def delete_checkpoints(sweep_dir: str, keep: str | None) -> None:
    """Delete the checkpoints of every trial but ``keep`` (of every trial: None): its Ray Train
    runs' and the copies Tune holds in the trial's own folder (population-based training)."""
    from orchestrator.sweeps.trial import TRIALS_DIR, in_tune_trial_folder, is_trial_run

    runs = storage.subfolders(storage.join(sweep_dir, TRIALS_DIR), "trial-")
    trial_dirs = [d for d in storage.subfolders(sweep_dir) if storage.base_name(d) != TRIALS_DIR]
    for folder in runs + trial_dirs:
        name = storage.base_name(folder)
        if keep and (is_trial_run(name, keep) or in_tune_trial_folder(name, keep)):
            continue
        for checkpoint in storage.subfolders(folder, "checkpoint_"):
            storage.delete_folder(checkpoint)


def best_config_path(sweep_dir: str, sweep_id: str) -> Path:
    """Where the best trial's config goes: in the sweep's folder, or, when the sweep is stored
    at a URI, in this working directory (a file ``redblue train`` can read)."""
    if storage.is_uri(sweep_dir):
        return state_root() / f"{sweep_id}-{BEST_CONFIG_FILE}"
    return Path(sweep_dir) / BEST_CONFIG_FILE
