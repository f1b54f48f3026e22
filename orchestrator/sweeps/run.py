"""One sweep from a validated config: Ray Tune trials, a nested MLflow record, the champion.

The sweep's parent MLflow run is also its resume record (:mod:`orchestrator.sweeps.resume`):
``redblue sweep CONFIG --resume`` restores Tune (trials, searcher and scheduler state) and
continues the same parent run. The end (best config, registration, champion rule, pruning) is in
:mod:`orchestrator.sweeps.conclude`.
"""

from __future__ import annotations

import itertools
import logging
import math
import os
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import yaml

from orchestrator import console, storage
from orchestrator.config import RedblueConfig
from orchestrator.exit_codes import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_INVALID, EXIT_OK
from orchestrator.lineage import record_data
from orchestrator.streaming.choice import PendingStream
from orchestrator.streaming.plan import plan_or_refuse, train_rows
from orchestrator.sweeps.conclude import conclude
from orchestrator.sweeps.config import Presets, config_values, streamed_trial_problem
from orchestrator.sweeps.results import SweepSummary, TrialOutcome, print_summary
from orchestrator.sweeps.resume import (
    NothingToResume,
    config_hash,
    find_unfinished,
    sweep_folder,
)
from trainers.log_level import library_log_level
from trainers.loop.plan import RunPlan

# A trial's own process only launches its Train run. It reserves memory, not CPU: 0.01 CPU
# taken from each node would leave no node of whole CPUs able to hold a 1-CPU worker.
TRIAL_RESOURCES: dict[str, float] = {"CPU": 0.0, "memory": 256.0 * 2**20}
TUNE_STATE_EVERY_S = 2
T = TypeVar("T")


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


def max_rounds(cfg: RedblueConfig, train_size: int, presets: Presets | None = None) -> int:
    """The most rounds any trial can run (batch size and epochs change the round count)."""
    from pydantic import ValidationError

    from trainers.loop.plan import rounds_of

    swept = {key: spec.candidates() for key, spec in cfg.sweep.space.items()}
    most = 1
    for values in itertools.product(*swept.values()):
        try:
            trial = cfg.with_values(config_values(dict(zip(swept, values, strict=True)), presets))
        except ValidationError:
            continue
        most = max(most, rounds_of(trial, train_size).num_rounds)
    return most


def sweep(
    cfg: RedblueConfig,
    plan: RunPlan | PendingStream,
    address: str | None,
    resume: bool,
    allow_schema_change: bool = False,
) -> tuple[int, SweepSummary | None]:
    """Run (or resume) a sweep end to end; returns (exit code, summary when it succeeded).

    The exit code is 1 when no trial finished or when the new version could not be given an
    alias safely (it stays registered; the message says why). ``cfg``'s paths are absolute
    (:func:`orchestrator.config.resolve_paths`)."""

    def finish(parent, sweep_id: str, sweep_dir: str, trials: list[TrialOutcome], planned):
        return conclude(cfg, planned, parent, sweep_id, sweep_dir, trials, allow_schema_change)

    code, summary = run_trials(cfg, plan, address, resume, "sweep", finish)
    if summary is None:
        return code, None
    print_summary(cfg, summary)
    return (EXIT_OK if summary.best and summary.alias else EXIT_FAILED), summary


# (parent run, sweep id, sweep folder, trials, the plan (a streamed table's made once Ray is up))
Finish = Callable[[Any, str, str, list[TrialOutcome], RunPlan], T]


def run_trials(
    cfg: RedblueConfig,
    plan: RunPlan | PendingStream,
    address: str | None,
    resume: bool,
    kind: str,
    finish: Finish[T],
    presets: Presets | None = None,
) -> tuple[int, T | None]:
    """Run (or resume) ``cfg.sweep``'s trials as Tune trials under one parent MLflow run (tag
    ``redblue.kind=<kind>``: ``sweep`` or ``compare``), then ``finish(parent, sweep_id,
    sweep_dir, trials)``; the space's pseudo keys are those of ``presets``
    (:func:`orchestrator.sweeps.config.config_values`). Returns (exit code, what ``finish``
    returned); the code is 0 when it returned, 2 when there is nothing to resume, 130 when
    interrupted (the parent stays open for ``--resume``), 1 when anything failed (the parent is
    marked FAILED)."""
    from mlflow.tracking import MlflowClient

    from orchestrator.environment import connect_ray_while, leave_ray_job_folder

    leave_ray_job_folder()
    if isinstance(plan, PendingStream) and (found := streamed_trial_problem(cfg, presets)):
        key, value, setting = found
        named = (
            f"--strategies {value}"
            if presets and key in presets
            else f"sweep.space {key} {value!r}"
        )
        console.print_error(
            f"{named}: {setting} needs every row in memory, and {cfg.data.source} is streamed "
            "(docs/training.md#streaming); leave it out, or set data.streaming: off"
        )
        return EXIT_INVALID, None
    from orchestrator.tracking import TrackedRun, tracking_uri

    client = MlflowClient(tracking_uri())
    if resume:
        try:
            found = find_unfinished(client, cfg, kind)
            sweep_id, sweep_dir = sweep_folder(found, cfg, kind)
        except NothingToResume as exc:
            console.print_error(str(exc))
            return EXIT_INVALID, None
        console.err.print(f"resuming {kind} {sweep_id} (MLflow run {found.info.run_id})")

        def open_parent() -> TrackedRun:
            return TrackedRun(found.info.run_id, cfg.name)
    else:
        sweep_id = f"{cfg.name}-{kind}-{time.strftime('%Y%m%d-%H%M%S')}"
        sweep_dir = storage.join(cfg.run.storage_path, sweep_id)

        def open_parent() -> TrackedRun:
            return _start_parent(cfg, sweep_id, sweep_dir, kind)

    wanted = trial_cpus(cfg) * (cfg.sweep.max_concurrent or 1)
    parent, where, ray_problem = connect_ray_while(open_parent, address, wanted)
    try:
        if ray_problem is not None:
            raise ray_problem
        if isinstance(plan, PendingStream):  # each trial makes its own pass too
            planned = plan_or_refuse(cfg, plan, parent)
            if planned is None:
                return EXIT_INVALID, None
            plan = planned
        if not resume:
            record_data(parent, cfg.data.source, plan)
        trials = _run_tune(
            cfg, plan, where, parent.run_id, sweep_id, sweep_dir, resume, kind, presets
        )
        result = finish(parent, sweep_id, sweep_dir, trials, plan)
    except KeyboardInterrupt:
        console.print_error(
            f"interrupted; continue with: redblue {kind} ... --resume ({kind} {sweep_id})"
        )
        return EXIT_INTERRUPTED, None
    except Exception as exc:
        message = f"{type(exc).__name__}: {exc}"
        parent.fail(message)
        console.print_error(f"{kind} failed: {message}")
        return EXIT_FAILED, None
    return EXIT_OK, result


def _start_parent(cfg: RedblueConfig, sweep_id: str, sweep_dir: str, kind: str):
    """The parent MLflow run of a sweep (or comparison), with its space, settings and config."""
    from orchestrator.tracking import TrackedRun

    parent = TrackedRun.start(
        cfg,
        {
            "redblue.kind": kind,
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
        parent.run_id, yaml.safe_dump(cfg.model_dump(), sort_keys=False), f"{kind}_config.yaml"
    )
    console.err.print(f"{kind} {sweep_id}: MLflow run {parent.run_id} ({parent.uri})")
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
    kind: str,
    presets: Presets | None,
) -> list[TrialOutcome]:
    import ray
    from ray import tune

    logging.getLogger("ray.tune").setLevel(library_log_level())
    # Trials are function trainables, which cannot reuse actors; PBT's advice does not apply.
    warnings.filterwarnings("ignore", message="Consider boosting PBT performance")
    # Save Tune's experiment state often, so that a killed driver loses little on --resume.
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", str(TUNE_STATE_EVERY_S))

    from mlflow.tracking import MlflowClient

    from orchestrator.sweeps.space import param_space, scheduler, searcher
    from orchestrator.sweeps.tracking import SweepTracker
    from orchestrator.sweeps.trial import run_trial
    from orchestrator.tracking import tracking_uri

    most_rounds = max_rounds(cfg, train_rows(plan), presets)
    concurrency = max_concurrent(cfg, ray.available_resources())
    if kind == "compare":
        seeds = len(cfg.sweep.space["seed"].grid or [])
        strategies = ", ".join(map(str, cfg.sweep.space["strategy"].grid or []))
        console.err.print(
            f"comparing on {where}: {strategies} on {seeds} seed(s), "
            f"{concurrency} at once, up to {most_rounds} rounds each"
        )
    else:
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
        tune.with_parameters(
            run_trial,
            base_config=cfg.model_dump(),
            sweep_dir=sweep_dir,
            presets=presets,
            initial_state=plan.initial_state,  # model.init_from's weights, resolved here
        ),
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
        tracker = SweepTracker(cfg, parent_run_id, sweep_id, presets)
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
    from orchestrator.sweeps.tracking import find_trial_run, trial_metrics

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
