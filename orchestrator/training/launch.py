"""Ray Train launch: Ray Train's ``DataParallelTrainer`` with the torch process group of
``orchestrator.training.process_group`` (what ``TorchTrainer`` is, with a config Ray Train's
controller can load without torch), whose workers run ``trainers.loop.trainer`` on DeepSpeed
engines.

Workers send per-round metrics to the driver through a small Ray queue (rank 0 only), so the
driver alone writes MLflow and the console, wherever the workers run. Checkpoints go through
``ray.train.report``; a restarted worker group resumes from ``ray.train.get_checkpoint()``.
"""

from __future__ import annotations

import json
import os
import queue as stdlib_queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import ray
import ray.train
from ray.train import (
    Checkpoint,
    CheckpointConfig,
    FailureConfig,
    LoggingConfig,
    RunConfig,
    ScalingConfig,
)
from ray.train.v2.api.data_parallel_trainer import DataParallelTrainer
from ray.train.v2.api.exceptions import ControllerError
from ray.util.queue import Empty, Queue
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from orchestrator import storage
from orchestrator.config import RedblueConfig
from orchestrator.ray_internals import (
    HEALTH_CHECK_INTERVAL_S_ENV_VAR,
    WORKER_GROUP_START_TIMEOUT_S_ENV_VAR,
    DatasetsCallback,
    WorkerGroupStartupTimeoutError,
)
from orchestrator.training.process_group import BoundTorchConfig
from orchestrator.training.worker import DATA_PARAMS_KEY, MODEL_KEY, NODE_IDS_KEY, train_worker
from trainers.log_level import library_log_level
from trainers.loop.plan import RunPlan

EVENT_POLL_S = 0.2
# How often Ray Train's controller collects the workers' reports (its default: 2 s). A worker
# holds one report at a time, so a Tune trial, which reports every round, could not go faster
# than a round per poll; a finished run also returns sooner.
CONTROLLER_POLL_S = 0.25


class WorkersUnplaceable(RuntimeError):
    """The cluster could not hold the worker group (nodes lost beyond what could be replaced)."""


@dataclass
class TrainResult:
    """What the driver learns from a finished (or failed) Ray Train run."""

    final_metrics: dict[str, float] = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list)
    checkpoint: Checkpoint | None = None
    diverged: str | None = None
    attempts: int = 0  # worker-group starts; more than one means restarts after failures
    node_ids: list[str] = field(default_factory=list)  # Ray nodes of the (last) worker group
    storage_path: str = ""

    @property
    def restarts(self) -> int:
        return max(0, self.attempts - 1)


def _drain(
    events: Queue,
    handle: Callable[[str, dict], None],
    stop: threading.Event,
    abandon: threading.Event,
) -> None:
    """Forward worker events to ``handle`` until ``stop`` is set and the queue is empty, or at
    once when ``abandon`` is set (workers still running after Ctrl-C keep the queue full)."""
    while not abandon.is_set():
        try:
            kind, payload = events.get(timeout=EVENT_POLL_S)
        except (Empty, stdlib_queue.Empty):
            if stop.is_set():
                return
            continue
        handle(kind, payload)


class TrainerWithoutIdleDatasets(DataParallelTrainer):
    """A data-parallel trainer that starts Ray Data's dataset manager only when it is given
    datasets: without them the manager is one more process to start (about a second of CPU)
    beside the workers' own start, for nothing."""

    def _create_default_callbacks(self):
        callbacks = super()._create_default_callbacks()
        if self.datasets:
            return callbacks
        return [c for c in callbacks if not isinstance(c, DatasetsCallback)]


def build_trainer(
    cfg: RedblueConfig,
    plan: RunPlan,
    events: Queue | None,
    *,
    name: str,
    storage_path: str,
    callbacks: list | None = None,
    start_from: Checkpoint | None = None,
    data_params: dict[str, str] | None = None,
) -> DataParallelTrainer:
    """The Ray Train trainer of one run. Without an ``events`` queue (a Tune trial), workers report
    every round to Ray Train instead, for ``callbacks`` such as Tune's report callback. A run
    given ``start_from`` (a checkpoint of another run) continues from it. A trial's
    ``data_params`` (its data report's MLflow params) come back in its first report.

    A worker group that cannot get its resources within ``run.start_timeout_s`` (a lost node not
    replaced) counts as a failure too, so a run ends instead of waiting forever; Ray Train reads
    the timeout (and its poll interval) from this process's environment and passes them on to
    its controller.
    """
    os.environ[WORKER_GROUP_START_TIMEOUT_S_ENV_VAR] = str(cfg.run.start_timeout_s)
    os.environ.setdefault(HEALTH_CHECK_INTERVAL_S_ENV_VAR, str(CONTROLLER_POLL_S))
    return TrainerWithoutIdleDatasets(
        train_worker,
        train_loop_config={
            "plan": ray.put(plan.for_workers()),
            MODEL_KEY: cfg.model.model_dump(),  # the workers choose deepspeed.zero_stage: auto
            "events": events,
            "log_level": library_log_level(),
            "start_from": start_from,
            DATA_PARAMS_KEY: json.dumps(data_params) if data_params else None,
        },
        backend_config=BoundTorchConfig(backend="nccl" if cfg.scaling.use_gpu else "gloo"),
        scaling_config=ScalingConfig(
            num_workers=cfg.scaling.num_workers,
            use_gpu=cfg.scaling.use_gpu,
            resources_per_worker={"CPU": cfg.scaling.cpus_per_worker},
        ),
        run_config=RunConfig(  # type: ignore[call-arg]  # stubs show Train v1's RunConfig
            name=name,
            storage_path=storage_path,
            checkpoint_config=CheckpointConfig(num_to_keep=cfg.checkpoint.keep),
            failure_config=FailureConfig(  # type: ignore[call-arg]  # Train v1's in the stubs
                max_failures=cfg.run.max_failures,
                controller_failure_limit=cfg.run.max_failures,
            ),
            logging_config=LoggingConfig(log_level=library_log_level()),
            callbacks=callbacks or [],
        ),
    )


def run_training(
    cfg: RedblueConfig,
    plan: RunPlan,
    on_round: Callable[[dict[str, float]], None],
    on_event: Callable[[str, dict], None],
    run_name: str,
) -> TrainResult:
    """Run the trainer to the end, streaming rounds to ``on_round`` as they happen."""
    result = TrainResult(storage_path=storage.absolute(cfg.run.storage_path, Path.cwd()))
    # On this driver's node, like Ray Train's controller: a lost worker node loses no events.
    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    events = Queue(actor_options={"num_cpus": 0, "scheduling_strategy": here})

    def handle(kind: str, payload: dict) -> None:
        if kind == "round":
            result.history.append(payload)
            on_round(payload)
        elif kind == "final":
            result.final_metrics = payload
        else:
            if kind == "started":
                result.attempts += 1
                result.node_ids = payload.pop(NODE_IDS_KEY)
                payload = {**payload, "attempt": float(result.attempts)}
            elif kind == "diverged":
                result.diverged = str(payload["message"])
            on_event(kind, payload)

    stop, abandon = threading.Event(), threading.Event()
    drainer = threading.Thread(target=_drain, args=(events, handle, stop, abandon), daemon=True)
    drainer.start()
    trainer = build_trainer(cfg, plan, events, name=run_name, storage_path=result.storage_path)
    fitted = None
    try:
        fitted = trainer.fit()
        result.checkpoint = fitted.checkpoint
    except ControllerError as exc:
        if isinstance(exc.controller_failure, WorkerGroupStartupTimeoutError):
            raise WorkersUnplaceable(unplaceable_message(cfg, result.attempts)) from None
        raise
    except SystemExit:  # Ray Train's Ctrl-C handler aborts the run, then calls sys.exit
        raise KeyboardInterrupt from None
    finally:
        if fitted is None:  # failed or interrupted: the events still coming do not matter
            abandon.set()
        stop.set()
        drainer.join()
        ray.kill(events.actor, no_restart=True)  # type: ignore[arg-type]
    return result


def unplaceable_message(cfg: RedblueConfig, attempts: int) -> str:
    """Why the worker group could not start: what it needs against what the cluster has left."""
    nodes = ray.nodes()
    alive = sum(1 for node in nodes if node.get("Alive"))
    free = ray.available_resources()
    kind, each = ("GPU", 1.0) if cfg.scaling.use_gpu else ("CPU", cfg.scaling.cpus_per_worker)
    when = "after a failure" if attempts else "at the start"
    return (
        f"the cluster cannot hold the worker group {when}: {cfg.scaling.num_workers} workers "
        f"x {each:g} {kind} found no room within run.start_timeout_s="
        f"{cfg.run.start_timeout_s:g} s; {alive} nodes alive with {free.get(kind, 0.0):g} "
        f"{kind} free, {len(nodes) - alive} nodes lost. Add nodes or lower scaling.num_workers."
    )
