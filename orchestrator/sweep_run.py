"""One sweep from a validated config: Ray Tune trials, a nested MLflow record, the champion.

The parent MLflow run (tag ``redblue.kind=sweep``) is also the sweep's resume record: its tags
hold the Tune experiment folder and a hash of the config, so ``redblue sweep CONFIG --resume``
finds the unfinished sweep, restores Tune (trials, searcher and scheduler state) and continues the
same parent run.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import math
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from orchestrator import console, storage
from orchestrator.config import RedblueConfig
from orchestrator.environment import state_root
from orchestrator.exit_codes import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_INVALID, EXIT_OK
from orchestrator.plan import RunPlan

if TYPE_CHECKING:
    from orchestrator.champion import Promotion, Score
    from trainers.data import Dataset, Split

# A trial's own process only launches its Train run. It reserves memory, not CPU: 0.01 CPU
# taken from each node would leave no node of whole CPUs able to hold a 1-CPU worker.
TRIAL_RESOURCES: dict[str, float] = {"CPU": 0.0, "memory": 256.0 * 2**20}
BEST_CONFIG_FILE = "best_config.yaml"
TUNE_STATE_EVERY_S = 2


class NothingToResume(Exception):
    """``--resume`` found no unfinished sweep of this config."""


@dataclass
class TrialOutcome:
    trial_id: str
    run_id: str
    status: str  # FINISHED, KILLED (stopped early), FAILED, RUNNING
    params: dict[str, Any]
    metrics: dict[str, float]
    checkpoint_path: str | None


@dataclass
class SweepSummary:
    parent_run_id: str
    sweep_id: str
    trials: list[TrialOutcome]
    best: TrialOutcome | None
    model_uri: str | None
    version: str | None
    alias: str | None
    reason: str
    best_config_path: Path | None


def config_hash(cfg: RedblueConfig) -> str:
    text = json.dumps(cfg.model_dump(exclude={"run"}), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def trial_cpus(cfg: RedblueConfig) -> float:
    return cfg.scaling.num_workers * cfg.scaling.cpus_per_worker


def max_concurrent(cfg: RedblueConfig, available: dict[str, float]) -> int:
    """``sweep.max_concurrent``, or as many trials as the free CPUs (and GPUs) hold."""
    if cfg.sweep.max_concurrent:
        return cfg.sweep.max_concurrent
    fits = math.floor(available.get("CPU", 0.0) / trial_cpus(cfg) + 1e-9)
    if cfg.scaling.use_gpu:
        fits = min(fits, math.floor(available.get("GPU", 0.0) / cfg.scaling.num_workers))
    return max(1, fits)


def max_rounds(cfg: RedblueConfig, train_size: int) -> int:
    """The most rounds any trial can run (batch size and epochs change the round count)."""
    from pydantic import ValidationError

    from trainers.rounds import plan_rounds

    swept = {key: spec.candidates() for key, spec in cfg.sweep.space.items()}
    most = 1
    for values in itertools.product(*swept.values()):
        try:
            trial = cfg.with_values(dict(zip(swept, values, strict=True)))
        except ValidationError:
            continue
        rounds = plan_rounds(
            train_size=train_size,
            batch_size=trial.optim.batch_size,
            epochs=trial.optim.epochs,
            phase_steps=trial.strategy.phase_steps,
            red_ratio=trial.strategy.red_ratio,
            kind=trial.strategy.kind,
        )
        most = max(most, rounds.num_rounds)
    return most


def find_unfinished(client, cfg: RedblueConfig) -> Any:
    """The latest sweep parent run of this experiment that did not end."""
    experiment = client.get_experiment_by_name(cfg.name)
    runs = client.search_runs(
        [experiment.experiment_id] if experiment else [],
        filter_string="tags.`redblue.kind` = 'sweep' and attributes.status = 'RUNNING'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    if not runs:
        raise NothingToResume(f"no unfinished sweep in experiment '{cfg.name}' to resume")
    run = runs[0]
    if run.data.tags.get("redblue.config_hash") != config_hash(cfg):
        raise NothingToResume(
            f"the unfinished sweep {run.data.tags.get('redblue.sweep_id')} was started with a "
            "different config; resume it with the same file and --set options"
        )
    return run


def sweep(
    cfg: RedblueConfig,
    plan: RunPlan,
    address: str | None,
    resume: bool,
    allow_schema_change: bool = False,
) -> tuple[int, SweepSummary | None]:
    """Run (or resume) a sweep end to end; returns (exit code, summary when it succeeded).

    The exit code is 1 when no trial finished or when the new version could not be given an
    alias safely (it stays registered; the message says why)."""
    from mlflow.tracking import MlflowClient

    from orchestrator.environment import connect_ray_while
    from orchestrator.tracking import TrackedRun, tracking_uri

    client = MlflowClient(tracking_uri())
    if resume:
        try:
            found = find_unfinished(client, cfg)
        except NothingToResume as exc:
            console.print_error(str(exc))
            return EXIT_INVALID, None
        sweep_id = found.data.tags["redblue.sweep_id"]
        sweep_dir = found.data.tags["redblue.sweep_path"]
        console.err.print(f"resuming sweep {sweep_id} (MLflow run {found.info.run_id})")

        def open_parent() -> TrackedRun:
            return TrackedRun(found.info.run_id, cfg.name)
    else:
        sweep_id = f"{cfg.name}-sweep-{time.strftime('%Y%m%d-%H%M%S')}"
        sweep_dir = storage.join(cfg.run.storage_path, sweep_id)

        def open_parent() -> TrackedRun:
            return _start_parent(cfg, sweep_id, sweep_dir)

    wanted = trial_cpus(cfg) * (cfg.sweep.max_concurrent or 1)
    parent, where, ray_problem = connect_ray_while(open_parent, address, wanted)
    try:
        if ray_problem is not None:
            raise ray_problem
        trials = _run_tune(cfg, plan, where, parent.run_id, sweep_id, sweep_dir, resume)
        summary = _conclude(cfg, plan, parent, sweep_id, sweep_dir, trials, allow_schema_change)
    except KeyboardInterrupt:
        console.print_error(
            f"interrupted; continue with: redblue sweep ... --resume (sweep {sweep_id})"
        )
        return EXIT_INTERRUPTED, None
    except Exception as exc:
        message = f"{type(exc).__name__}: {exc}"
        parent.fail(message)
        console.print_error(f"sweep failed: {message}")
        return EXIT_FAILED, None
    _print_summary(cfg, summary)
    return (EXIT_OK if summary.best and summary.alias else EXIT_FAILED), summary


def _start_parent(cfg: RedblueConfig, sweep_id: str, sweep_dir: str):
    """The sweep's parent MLflow run, with its space, settings and config."""
    from orchestrator.tracking import TrackedRun

    parent = TrackedRun.start(
        cfg,
        {
            "redblue.kind": "sweep",
            "redblue.sweep_id": sweep_id,
            "redblue.sweep_path": sweep_dir,
            "redblue.config_hash": config_hash(cfg),
            "redblue.scheduler": cfg.sweep.scheduler,
            "redblue.search": cfg.sweep.search,
        },
        run_name=sweep_id,
    )
    parent.client.log_batch(parent.run_id, params=_space_params(cfg))
    parent.client.log_text(
        parent.run_id, yaml.safe_dump(cfg.model_dump(), sort_keys=False), "sweep_config.yaml"
    )
    console.err.print(f"sweep {sweep_id}: MLflow run {parent.run_id} ({parent.uri})")
    return parent


def _space_params(cfg: RedblueConfig) -> list:
    from mlflow.entities import Param

    params = {f"space.{key}": spec.describe() for key, spec in cfg.sweep.space.items()}
    params.update(
        {
            f"sweep.{key}": str(value)
            for key, value in cfg.sweep.model_dump(exclude={"space"}).items()
        }
    )
    return [Param(k, v) for k, v in params.items()]


def _run_tune(
    cfg: RedblueConfig,
    plan: RunPlan,
    where: str,
    parent_run_id: str,
    sweep_id: str,
    sweep_dir: str,
    resume: bool,
) -> list[TrialOutcome]:
    import ray
    from ray import tune

    logging.getLogger("ray.tune").setLevel(logging.WARNING)
    # Trials are function trainables, which cannot reuse actors; PBT's advice does not apply.
    warnings.filterwarnings("ignore", message="Consider boosting PBT performance")
    # Save Tune's experiment state often, so that a killed driver loses little on --resume.
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", str(TUNE_STATE_EVERY_S))

    from mlflow.tracking import MlflowClient

    from orchestrator.sweep_space import param_space, scheduler, searcher
    from orchestrator.sweep_tracking import SweepTracker
    from orchestrator.sweep_trial import run_trial
    from orchestrator.tracking import tracking_uri

    most_rounds = max_rounds(cfg, len(plan.split.train))
    concurrency = max_concurrent(cfg, ray.available_resources())
    console.err.print(
        f"sweeping on {where}: {cfg.sweep.num_samples} samples, {concurrency} at once, "
        f"{cfg.sweep.scheduler} scheduler, {cfg.sweep.search} search, "
        f"up to {most_rounds} rounds per trial"
    )
    if cfg.sweep.scheduler == "pbt" and concurrency < 2:
        console.err.print(
            "warning: population-based training compares trials running at the same time; with "
            "1 at once it cannot exploit any and runs like fifo. Let 2 or more run at once "
            "(sweep.max_concurrent, fewer scaling.cpus_per_worker, or more CPUs)."
        )
    trainable = tune.with_resources(
        tune.with_parameters(run_trial, base_config=cfg.model_dump(), sweep_dir=sweep_dir),
        TRIAL_RESOURCES,
    )
    space = param_space(cfg.sweep)
    if resume:
        tuner = tune.Tuner.restore(
            sweep_dir,
            trainable,
            resume_unfinished=True,
            resume_errored=True,
            param_space=space,
        )
    else:
        tracker = SweepTracker(cfg, parent_run_id, sweep_id)
        tuner = tune.Tuner(
            trainable,
            param_space=space,
            tune_config=tune.TuneConfig(
                metric=cfg.sweep.metric,
                mode=cfg.sweep.mode,
                scheduler=scheduler(cfg, most_rounds),
                search_alg=searcher(cfg, concurrency),
                num_samples=cfg.sweep.num_samples,
            ),
            run_config=tune.RunConfig(
                name=sweep_id,
                storage_path=storage.parent(sweep_dir),
                callbacks=[tracker],
                verbose=0,
            ),
        )
    grid = tuner.fit()
    client = MlflowClient(tracking_uri())
    return [_outcome(client, cfg, sweep_id, grid[i]) for i in range(len(grid))]


def _outcome(client, cfg: RedblueConfig, sweep_id: str, result: Any) -> TrialOutcome:
    from orchestrator.sweep_tracking import find_trial_run, trial_metrics

    trial_id = str(result.metrics.get("trial_id") or Path(result.path).name)
    run = find_trial_run(client, cfg.name, sweep_id, trial_id)
    return TrialOutcome(
        trial_id=trial_id,
        run_id=run.info.run_id if run else "",
        status=run.info.status if run else ("FAILED" if result.error else "RUNNING"),
        params=dict(result.config or {}),
        metrics=trial_metrics(result.metrics or {}),
        checkpoint_path=(result.metrics or {}).get("checkpoint_path"),
    )


def rank(trials: list[TrialOutcome], metric: str, mode: str) -> list[TrialOutcome]:
    """Finished trials first, best ``metric`` first; then the others by their last value."""

    def key(trial: TrialOutcome) -> tuple[int, float]:
        value = trial.metrics.get(metric, math.nan)
        signed = value if mode == "min" else -value
        return (
            0 if trial.status == "FINISHED" else 1,
            signed if math.isfinite(value) else math.inf,
        )

    return sorted(trials, key=key)


def _conclude(
    cfg: RedblueConfig,
    plan: RunPlan,
    parent,
    sweep_id: str,
    sweep_dir: str,
    trials: list[TrialOutcome],
    allow_schema_change: bool = False,
) -> SweepSummary:
    from orchestrator.champion import PromotionError
    from orchestrator.tracking import TrackedRun, download_final_model, register_version

    ranked = rank(trials, cfg.sweep.metric, cfg.sweep.mode)
    best = ranked[0] if ranked and ranked[0].status == "FINISHED" else None
    _log_results(cfg, parent, ranked)
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
    summary.model_uri = TrackedRun(best.run_id, cfg.name).log_model(
        model_dir, plan.dataset.features[plan.split.test[:5]]
    )
    version = register_version(
        summary.model_uri,
        cfg.name,
        {
            "redblue.run_id": best.run_id,
            "redblue.sweep_id": sweep_id,
            "redblue.sweep_run_id": parent.run_id,
        },
    )
    try:
        promotion, score = promote_version(
            parent.client,
            cfg.name,
            version,
            model_dir,
            plan.dataset,
            plan.split,
            allow_schema_change=allow_schema_change,
        )
    except PromotionError as exc:
        console.print_error(str(exc))
        parent.client.set_model_version_tag(cfg.name, version, "redblue.decision", str(exc))
        parent.set_tag("redblue.registered_version", f"{version} (no alias)")
        summary.version, summary.reason = version, str(exc)
    else:
        alias, reason = promotion.alias, promotion.decision.reason
        parent.log_metrics({f"champion_check.{score.metric}": score.value})
        parent.client.set_model_version_tag(cfg.name, version, "redblue.decision", reason)
        parent.set_tag("redblue.registered_version", f"{version} ({alias})")
        summary.version, summary.alias, summary.reason = version, alias, reason
    if not cfg.sweep.keep_all_checkpoints:
        _delete_checkpoints(sweep_dir, keep=best.trial_id)
    parent.finish()
    return summary


def promote_version(
    client,
    name: str,
    version: str,
    model_dir: Path,
    dataset: Dataset,
    split: Split,
    *,
    allow_schema_change: bool = False,
) -> tuple[Promotion, Score]:
    """Score the new ``version`` and the current champion on the test part of ``split``, compare
    their input schemas, and set the alias the decision gives while the champion has not moved
    (:func:`orchestrator.champion.promote`). Returns the promotion and the new version's score.
    """
    from orchestrator.champion import FeatureSchema, decide, promote, schema_changes, score_model
    from orchestrator.tracking import fetch_final_model

    challenger = score_model(model_dir, dataset, split)
    schema = FeatureSchema.of_directory(model_dir)

    def judge(champion_version: str | None):
        if champion_version is None:
            return decide(challenger, None)
        directory = fetch_final_model(f"models:/{name}/{champion_version}")
        changes = schema_changes(FeatureSchema.of_directory(directory), schema)
        champion = None
        if not changes:
            try:
                champion = score_model(directory, dataset, split)
            except ValueError as exc:
                console.err.print(f"the current champion cannot be scored on this data: {exc}")
        return decide(
            challenger,
            champion,
            changes=changes,
            allow_schema_change=allow_schema_change,
            has_champion=True,
        )

    promotion = promote(client, name, version, judge, log=console.err.print)
    client.set_model_version_tag(
        name, version, "redblue.champion_before", promotion.champion_before or "none"
    )
    return promotion, challenger


def _params(values: dict[str, Any]) -> list:
    from mlflow.entities import Param

    return [Param(k, str(v)) for k, v in values.items()]


def _log_results(cfg: RedblueConfig, parent, ranked: list[TrialOutcome]) -> None:
    """The results table (CSV) and a plot of the metric against each swept parameter."""
    import pandas as pd

    rows = [
        {"trial_id": t.trial_id, "status": t.status, "run_id": t.run_id, **t.params, **t.metrics}
        for t in ranked
    ]
    frame = pd.DataFrame(rows)
    parent.client.log_text(parent.run_id, frame.to_csv(index=False), "results.csv")
    metric = cfg.sweep.metric
    if metric not in frame or not cfg.sweep.space:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = list(cfg.sweep.space)
    figure, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3.5), squeeze=False)
    for axis, key in zip(axes[0], keys, strict=True):
        for status, marker in (("FINISHED", "o"), ("KILLED", "x"), ("FAILED", "s")):
            part = frame[frame["status"] == status]
            if key in part and len(part):
                axis.scatter(
                    part[key].astype(str) if part[key].dtype == object else part[key],
                    part[metric],
                    marker=marker,
                    label=status.lower(),
                )
        if cfg.sweep.space[key].kind == "loguniform":
            axis.set_xscale("log")
        axis.set(xlabel=key, ylabel=metric)
    axes[0][0].legend(fontsize=8)
    figure.suptitle(f"{cfg.name}: {metric} per trial")
    figure.tight_layout()
    parent.client.log_figure(parent.run_id, figure, "metric_vs_params.png")
    plt.close(figure)


def _delete_checkpoints(sweep_dir: str, keep: str) -> None:
    """Delete the checkpoints of every trial but ``keep``: its Ray Train runs' and the copies
    Tune holds in the trial's own folder (population-based training)."""
    from orchestrator.sweep_trial import TRIALS_DIR, in_tune_trial_folder, is_trial_run

    runs = storage.subfolders(storage.join(sweep_dir, TRIALS_DIR), "trial-")
    trial_dirs = [d for d in storage.subfolders(sweep_dir) if storage.base_name(d) != TRIALS_DIR]
    for folder in runs + trial_dirs:
        name = storage.base_name(folder)
        if is_trial_run(name, keep) or in_tune_trial_folder(name, keep):
            continue
        for checkpoint in storage.subfolders(folder, "checkpoint_"):
            storage.delete_folder(checkpoint)


def best_config_path(sweep_dir: str, sweep_id: str) -> Path:
    """Where the best trial's config goes: in the sweep's folder, or, when the sweep is stored
    at a URI, in this working directory (a file ``redblue train`` can read)."""
    if storage.is_uri(sweep_dir):
        return state_root() / f"{sweep_id}-{BEST_CONFIG_FILE}"
    return Path(sweep_dir) / BEST_CONFIG_FILE


def _print_summary(cfg: RedblueConfig, summary: SweepSummary) -> None:
    from orchestrator.sweep_tracking import format_params
    from orchestrator.tracking import tracking_uri, ui_command

    metric = cfg.sweep.metric
    rows = [
        (
            t.trial_id,
            t.status.lower().replace("killed", "stopped early"),
            format_params(t.params),
            str(int(t.metrics.get("round", 0))) if "test_loss" not in t.metrics else "all",
            f"{t.metrics.get(metric, math.nan):.4f}",
        )
        for t in summary.trials
    ]
    console.out.print(console.trials_table(rows, metric, title=f"{cfg.name}: trials, best first"))
    if summary.best is None:
        console.print_error(f"no trial finished; see MLflow run {summary.parent_run_id}")
        return
    rows2 = [
        (k, f"{v:.4f}")
        for k, v in sorted(summary.best.metrics.items())
        if k.startswith("test_") or k == metric
    ]
    rows2 += [
        ("best trial", f"{summary.best.trial_id} ({format_params(summary.best.params)})"),
        ("best config", str(summary.best_config_path)),
        ("model URI", str(summary.model_uri)),
        (
            "registered",
            f"{cfg.name} version {summary.version} "
            + (f"as @{summary.alias}" if summary.alias else "without an alias"),
        ),
        ("why", summary.reason),
        ("sweep MLflow run", summary.parent_run_id),
        ("MLflow UI", ui_command(tracking_uri())),
    ]
    console.print_summary(rows2, title=f"{cfg.name}: sweep {summary.sweep_id} finished")
