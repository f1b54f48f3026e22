"""A command's config and plan, checked before Ray starts: what ``redblue train``, ``sweep``,
``compare``, ``compress`` and ``validate`` run, or one problem (ConfigError, DataError,
StorageError) for the CLI to exit 2 with."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from orchestrator import console
from orchestrator.config import ConfigError, RedblueConfig, load_config, resolve_paths
from orchestrator.worker_shape import WorkerChoice, worker_choice


def checked(
    config: Path, overrides: list[str], address: str | None, for_sweep: bool, *, trials: bool,
    run: bool,
) -> tuple[RedblueConfig, Any]:  # fmt: skip
    """The config (its paths made absolute) and its plan (a streamed table's once Ray is up).
    Training checks what it uses and warns about a sweep section a sweep would refuse. Auto
    workers are chosen for trials (``for_sweep``, ``trials``), and for the cluster the command
    will ``run`` on once everything else is checked (then planned again if the shape changed)."""
    workers = worker_choice(address, for_sweep or trials, may_connect=run)
    cfg, plan, report = _planned(config, overrides, for_sweep, workers, console.print_warning)
    if workers.reason and workers.cluster is not None:  # auto: chosen for the cluster's nodes
        workers = WorkerChoice(workers.for_trials, workers.cluster)
        again = load_config(config, overrides, for_sweep, None, workers)
        if again.scaling != cfg.scaling:
            cfg, plan, report = _planned(config, overrides, for_sweep, workers, None)
    console.print_workers(cfg.scaling, workers.reason)
    console.print_data(report)
    return cfg, plan


def _planned(
    config: Path,
    overrides: list[str],
    for_sweep: bool,
    workers: WorkerChoice,
    warn: Callable[[str], None] | None,
):
    from orchestrator.streaming.choice import PendingStream, plan_input
    from orchestrator.sweeps.config import plan_metric_problem
    from orchestrator.warm_start import warm_start

    cfg = load_config(config, overrides, for_sweep, warn, workers)
    plan, report = plan_input(cfg)
    if not isinstance(plan, PendingStream):  # a streamed one's once its pass is done
        plan = warm_start(cfg, plan)
    problem = plan_metric_problem(cfg.sweep, cfg.model.kind, plan) if for_sweep else None
    if problem:
        raise ConfigError(f"{config}: {problem}")
    resolve_paths(cfg)
    return cfg, plan, report
