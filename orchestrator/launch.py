"""Ray Train launch: a ``TorchTrainer`` whose workers run ``trainers.loop`` on DeepSpeed engines.

Workers send per-round metrics to the driver through a small Ray queue (rank 0 only), so the
driver alone writes MLflow and the console, wherever the workers run. Checkpoints go through
``ray.train.report``; a restarted worker group resumes from ``ray.train.get_checkpoint()``.
"""

from __future__ import annotations

import copy
import queue as stdlib_queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
from ray.train.torch import TorchConfig, TorchTrainer
from ray.util.queue import Empty, Queue

from orchestrator.config import RedblueConfig
from orchestrator.environment import prepare_worker_env
from orchestrator.plan import RunPlan

EVENT_POLL_S = 0.2


@dataclass
class TrainResult:
    """What the driver learns from a finished (or failed) Ray Train run."""

    final_metrics: dict[str, float] = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list)
    checkpoint: Checkpoint | None = None
    diverged: str | None = None
    attempts: int = 0  # worker-group starts; more than one means restarts after failures
    num_nodes: int = 0  # distinct Ray nodes the (last) worker group ran on
    storage_path: str = ""

    @property
    def restarts(self) -> int:
        return max(0, self.attempts - 1)


def train_worker(loop_config: dict[str, Any]) -> None:
    """Body of every Ray Train worker: engines and the loop on the driver's data and split."""
    cfg = RedblueConfig.model_validate(loop_config["config"])
    prepare_worker_env(cfg.scaling.use_gpu)
    from trainers.engine import DeepSpeedReplica
    from trainers.loop import Trainer, TrainingDiverged, build_replicas

    events: Queue | None = loop_config["events"]
    report_every_round = events is None
    context = ray.train.get_context()
    rank, world_size = context.get_world_rank(), context.get_world_size()
    plan: RunPlan = copy.deepcopy(ray.get(loop_config["plan"]))  # writable copies of the arrays

    def make_replica(model, name: str, total_steps: int) -> DeepSpeedReplica:
        return DeepSpeedReplica(
            model,
            ds=cfg.deepspeed,
            optim=cfg.optim,
            world_size=world_size,
            total_steps=total_steps,
        )

    def report(metrics: dict[str, float], checkpoint_dir: Path | None) -> None:
        if rank == 0 and events is not None:
            events.put(("round" if "round" in metrics else "final", metrics))
        if checkpoint_dir is not None:
            ray.train.report(metrics, checkpoint=Checkpoint.from_directory(str(checkpoint_dir)))
        elif report_every_round:  # a Tune trial: each round is a result for the scheduler
            ray.train.report(metrics)

    replicas = build_replicas(
        plan.spec, plan.dataset, plan.split, plan.loop, make_replica, plan.rounds
    )
    trainer = Trainer(plan.loop, plan.dataset, plan.split, plan.spec, replicas, plan.rounds, report)
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            trainer.restore(Path(directory))
    nodes = _nodes_spanned(world_size)
    if rank == 0 and events is not None:
        events.put(("started", {"round": float(trainer.state.next_round), "num_nodes": nodes}))
    try:
        trainer.run()
    except TrainingDiverged as exc:  # deterministic: retrying would diverge again
        if events is None:
            raise
        if rank == 0:
            events.put(("diverged", {"round": float(exc.round_number), "message": str(exc)}))


def _nodes_spanned(world_size: int) -> float:
    """How many distinct Ray nodes the worker group runs on (every rank takes part)."""
    import torch.distributed as dist

    node_id = ray.get_runtime_context().get_node_id()
    if world_size == 1 or not dist.is_initialized():
        return 1.0
    everyone: list[str | None] = [None] * world_size
    dist.all_gather_object(everyone, node_id)
    return float(len(set(everyone)))


def _drain(events: Queue, handle: Callable[[str, dict], None], stop: threading.Event) -> None:
    """Forward worker events to ``handle`` until ``stop`` is set and the queue is empty."""
    while True:
        try:
            kind, payload = events.get(timeout=EVENT_POLL_S)
        except (Empty, stdlib_queue.Empty):
            if stop.is_set():
                return
            continue
        handle(kind, payload)


def build_trainer(
    cfg: RedblueConfig,
    plan: RunPlan,
    events: Queue | None,
    *,
    name: str,
    storage_path: str,
    callbacks: list | None = None,
) -> TorchTrainer:
    """The TorchTrainer of one run. Without an ``events`` queue (a Tune trial), workers report
    every round to Ray Train instead, for ``callbacks`` such as Tune's report callback."""
    return TorchTrainer(
        train_worker,
        train_loop_config={"config": cfg.model_dump(), "plan": ray.put(plan), "events": events},
        torch_config=TorchConfig(backend="nccl" if cfg.scaling.use_gpu else "gloo"),
        scaling_config=ScalingConfig(
            num_workers=cfg.scaling.num_workers,
            use_gpu=cfg.scaling.use_gpu,
            resources_per_worker={"CPU": cfg.scaling.cpus_per_worker},
        ),
        run_config=RunConfig(  # type: ignore[call-arg]  # stubs show Train v1's RunConfig
            name=name,
            storage_path=storage_path,
            checkpoint_config=CheckpointConfig(num_to_keep=cfg.checkpoint.keep),
            failure_config=FailureConfig(max_failures=cfg.run.max_failures),
            logging_config=LoggingConfig(log_level="WARNING"),
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
    """Run the TorchTrainer to the end, streaming rounds to ``on_round`` as they happen."""
    result = TrainResult(storage_path=str(Path(cfg.run.storage_path).resolve()))
    events = Queue(actor_options={"num_cpus": 0})

    def handle(kind: str, payload: dict) -> None:
        if kind == "round":
            result.history.append(payload)
            on_round(payload)
        elif kind == "final":
            result.final_metrics = payload
        else:
            if kind == "started":
                result.attempts += 1
                result.num_nodes = int(payload.get("num_nodes", 0))
                payload = {**payload, "attempt": float(result.attempts)}
            elif kind == "diverged":
                result.diverged = str(payload["message"])
            on_event(kind, payload)

    stop = threading.Event()
    drainer = threading.Thread(target=_drain, args=(events, handle, stop), daemon=True)
    drainer.start()
    trainer = build_trainer(cfg, plan, events, name=run_name, storage_path=result.storage_path)
    try:
        fitted = trainer.fit()
        result.checkpoint = fitted.checkpoint
    finally:
        stop.set()
        drainer.join()
        ray.kill(events.actor, no_restart=True)  # type: ignore[arg-type]
    return result
