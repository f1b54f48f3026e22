"""One training from a validated config: MLflow run, Ray Train, model logging, summary."""

from __future__ import annotations

import functools
import os
import time
import traceback
from dataclasses import dataclass
from typing import Any

import numpy as np

from orchestrator import console
from orchestrator.config import RedblueConfig
from orchestrator.exit_codes import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_INVALID, EXIT_OK
from orchestrator.streaming.choice import PendingStream
from orchestrator.streaming.plan import plan_or_refuse
from trainers.loop.plan import RunPlan


@dataclass
class TrainSummary:
    run_id: str
    model_uri: str
    metrics: dict[str, float]
    checkpoint_path: str
    tracking_uri: str
    registered: dict[str, Any] | None = None  # --register: version, alias, reason, score


@functools.cache
def command_started_at() -> float:
    """Unix time at which this process started (the user's command, for start-up figures).

    On Linux: now, less the process's age (its start in clock ticks since boot, against the
    time since boot). ``psutil``'s ``create_time`` adds the start to the boot time, which Linux
    gives in whole seconds, so it can be up to a second early."""
    try:
        with open("/proc/self/stat") as stat, open("/proc/uptime") as uptime:
            started_ticks = int(stat.read().rpartition(")")[2].split()[19])  # field 22, starttime
            since_boot = float(uptime.read().split()[0])
    except OSError:  # not Linux
        import psutil

        return psutil.Process().create_time()
    return time.time() - (since_boot - started_ticks / os.sysconf("SC_CLK_TCK"))


def run_tags(cfg: RedblueConfig) -> dict[str, str]:
    return {
        "redblue.kind": "train",
        "redblue.strategy": cfg.strategy.kind,
        "redblue.precision": cfg.deepspeed.precision,
        "redblue.world_size": str(cfg.scaling.num_workers),
        "redblue.data": cfg.data.source,
        "redblue.train_loss": train_loss_weighting(cfg),
    }


def train_loss_weighting(cfg: RedblueConfig) -> str:
    """What the reported training losses are: plain means, or weighted as they were trained."""
    weights = []
    if cfg.optim.class_weights == "balanced":
        weights.append("class weights (optim.class_weights)")
    if cfg.strategy.clean == "prune":
        weights.append("label issues at weight 0 (strategy.clean prune)")
    elif cfg.strategy.clean == "weight":
        weights.append("each row at its probability of its label (strategy.clean weight)")
    return "weighted: " + ", ".join(weights) if weights else "unweighted"


def train(
    cfg: RedblueConfig,
    plan: RunPlan | PendingStream,
    address: str | None,
    tags: dict[str, str] | None = None,
    *,
    register: bool = False,
    resume_run_id: str | None = None,
) -> tuple[int, TrainSummary | None]:
    """Run one training end to end; returns (exit code, summary when it succeeded). A streamed
    table is planned once Ray is up (:mod:`orchestrator.streaming.plan`). ``tags`` add to (or
    replace) the run's tags (``redblue compress``'s). ``register``: a new version of the
    registered model ``cfg.name``, through the champion gate. ``resume_run_id``: continue that
    run (:mod:`orchestrator.training.resume`).

    ``cfg``'s paths are absolute (:func:`orchestrator.config.resolve_paths`)."""
    from orchestrator.environment import connect_ray_while, leave_ray_job_folder, starts_local_ray

    leave_ray_job_folder()
    preload_torch = starts_local_ray(address)

    def open_run():
        # Ray Train and MLflow load here, while Ray starts (about 1.4 s of imports), and torch
        # (0.9 s) for the trained model's report when a local Ray is starting: the driver does
        # not use it before training, so a run on a running Ray loads it after its workers'.
        if preload_torch:
            import orchestrator.evaluation  # noqa: F401
        from orchestrator.tracking import TrackedRun
        from orchestrator.training import launch  # noqa: F401
        from orchestrator.training.resume import reopen

        if resume_run_id:
            return reopen(resume_run_id, cfg)
        return TrackedRun.start(cfg, run_tags(cfg) | (tags or {}))

    started = time.perf_counter()
    tracked, where, ray_problem = connect_ray_while(
        open_run, address, cfg.scaling.num_workers * cfg.scaling.cpus_per_worker
    )
    from orchestrator.generation_report import log_samples
    from orchestrator.lineage import record_data
    from orchestrator.tracking import download_final_model, node_tags, ray_run_name, ui_command
    from orchestrator.training.launch import run_training
    from orchestrator.training.worker import ZERO_REASON_KEY, ZERO_STAGE_KEY
    from trainers.spec import LABEL_ISSUES_FILE

    console.err.print(
        f"MLflow run {tracked.run_id} in experiment '{cfg.name}' ({tracked.uri})", soft_wrap=True
    )
    if isinstance(plan, PendingStream) and ray_problem is None:
        planned = plan_or_refuse(cfg, plan, tracked)
        if planned is None:
            return EXIT_INVALID, None
        plan = planned
    if isinstance(plan, PendingStream):  # Ray did not start: the problem is raised below
        num_rounds = 0
    else:
        record_data(tracked, cfg.data.source, plan)
        num_rounds = plan.rounds.num_rounds
    startup: dict[str, float] = {}
    clock = console.RoundClock(num_rounds, command_started_at())

    def on_round(metrics: dict[str, float]) -> None:
        first_step_at = metrics.pop("first_step_at", None)
        if first_step_at is not None and "time_to_first_step_s" not in startup:
            startup["time_to_first_step_s"] = first_step_at - command_started_at()
            tracked.log_metrics(startup)
            console.err.print(
                f"first optimizer step {startup['time_to_first_step_s']:.1f} s after the "
                "command started"
            )
        tracked.log_metrics(metrics, step=int(metrics["round"]))
        console.print_round(metrics, num_rounds, clock)

    def on_event(kind: str, payload: dict) -> None:
        if kind == "started" and payload["attempt"] == 1:
            stage, why = payload[ZERO_STAGE_KEY], payload[ZERO_REASON_KEY]
            tracked.set_tags({"redblue.zero_stage": str(stage), "redblue.zero_stage_reason": why})
            if cfg.deepspeed.zero_stage == "auto":
                console.err.print(f"the workers train at ZeRO-{stage} ({why})")
            if resume_run_id:
                round_number = int(payload["round"]) + 1
                console.err.print(f"resuming at round {round_number}, its last checkpoint")
        if kind == "started" and payload["attempt"] > 1:
            restarts = int(payload["attempt"]) - 1
            tracked.set_tag("redblue.restarts", str(restarts))  # recorded as it happens
            tracked.log_metrics({"restarts": restarts})
            console.err.print(
                f"workers restarted (restart {restarts}); resuming at round "
                f"{int(payload['round']) + 1}"
            )
        elif kind == "diverged":
            console.print_error(str(payload["message"]))
        elif kind == "samples":  # a generative model's rows at an evaluation
            assert not isinstance(plan, PendingStream)
            log_samples(tracked, plan.spec, int(payload["round"]), np.asarray(payload["rows"]))

    try:
        if ray_problem is not None:
            raise ray_problem
        assert not isinstance(plan, PendingStream)
        stage = cfg.deepspeed.zero_stage  # auto: the workers choose, and say (on_event)
        zero = "ZeRO auto" if stage == "auto" else f"ZeRO-{stage}"
        console.err.print(
            f"training on {where}: {cfg.strategy.kind}, {cfg.scaling.num_workers} DeepSpeed "
            f"worker(s) x {cfg.scaling.cpus_per_worker:g} CPU(s), {zero}, "
            f"{num_rounds} rounds of "
            f"{sum(plan.rounds.steps_per_replica.values())} steps; training losses "
            f"{train_loss_weighting(cfg)}"
        )
        result = run_training(
            cfg, plan, on_round, on_event, run_name=ray_run_name(cfg.name, tracked.run_id)
        )
        tracked.log_metrics({"restarts": result.restarts})
        tracked.set_tags({"redblue.restarts": str(result.restarts), **node_tags(result.node_ids)})
        tracked.log_learning_curve(result.history)
        checkpoint_path = result.checkpoint.path if result.checkpoint else "(none)"
        if result.diverged:
            tracked.fail(f"{result.diverged}; last good checkpoint: {checkpoint_path}")
            console.err.print(f"last good checkpoint: {checkpoint_path}")
            return EXIT_FAILED, None
        if result.checkpoint is None or not result.final_metrics:
            raise RuntimeError("training ended without a final checkpoint")
        tracked.log_metrics(result.final_metrics, step=num_rounds)
        model_dir = download_final_model(result.checkpoint)
        model_uri = tracked.log_model(model_dir, plan.model_sample())
        from orchestrator.evaluation import log_evaluation  # torch: after the workers'

        log_evaluation(tracked, model_dir, plan)
        tracked.finish()
    except KeyboardInterrupt:
        tracked.fail("interrupted (Ctrl-C, or the job was stopped)", status="KILLED")
        console.print_error("interrupted; the MLflow run is marked KILLED")
        return EXIT_INTERRUPTED, None
    except Exception as exc:
        message = f"{type(exc).__name__}: {exc}"
        tracked.fail(message, traceback.format_exc())
        console.print_error(f"training failed: {message}")
        return EXIT_FAILED, None

    registered = None
    if register:  # after the run is recorded: a registry failure loses no training
        try:
            registered = register_trained(cfg, plan, tracked, model_uri, model_dir)
        except Exception as exc:
            console.print_error(
                f"run {tracked.run_id} finished, but registering its model failed: "
                f"{type(exc).__name__}: {exc}"
            )
            return EXIT_FAILED, None
    summary = TrainSummary(
        run_id=tracked.run_id,
        model_uri=model_uri,
        metrics=result.final_metrics,
        checkpoint_path=checkpoint_path,
        tracking_uri=tracked.uri,
        registered=registered.fields() if registered else None,
    )
    rows = [
        (k, f"{v:.0f}" if k == "best_round" else f"{v:.4f}")
        for k, v in sorted(summary.metrics.items())
    ]
    rows += [
        ("MLflow run_id", summary.run_id),
        ("model URI", summary.model_uri),
        ("checkpoint", summary.checkpoint_path),
        ("MLflow UI", ui_command(summary.tracking_uri)),
        *([("registered", registered.line(cfg.name))] if registered else []),
        ("first step after", f"{startup.get('time_to_first_step_s', float('nan')):.1f} s"),
        ("wall time", f"{time.perf_counter() - started:.1f} s"),
    ]
    console.print_summary(rows, title=f"{cfg.name}: {cfg.strategy.kind} training finished")
    if summary.tracking_uri.startswith("http"):  # a tracking server: the run's own page
        console.out.print(f"run page: {summary.tracking_uri.rstrip('/')}/{run_page(tracked)}")
    issues = model_dir.parent / LABEL_ISSUES_FILE
    if issues.exists():
        console.print_label_issues(issues)
    return EXIT_OK, summary


def run_page(tracked) -> str:
    """The run's page in the MLflow UI, relative to the tracking server's address."""
    experiment_id = tracked.client.get_run(tracked.run_id).info.experiment_id
    return f"#/experiments/{experiment_id}/runs/{tracked.run_id}"


def register_trained(cfg: RedblueConfig, plan: RunPlan, tracked, model_uri: str, model_dir):
    """``train --register``: the run's model as a new version of ``cfg.name``, its alias by the
    champion gate on this run's test split; recorded on the run as a sweep records it."""
    from orchestrator.registering import register_and_promote

    tags = {"redblue.run_id": tracked.run_id}
    registered = register_and_promote(
        tracked.client, model_uri, cfg.name, tags, model_dir, plan.dataset, plan.split
    )
    alias = registered.alias or "no alias"
    tracked.set_tag("redblue.registered_version", f"{registered.version} ({alias})")
    return registered
