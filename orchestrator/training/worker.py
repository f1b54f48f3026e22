"""The body of every Ray Train worker: engines and the loop on the driver's plan.

Ray Train's controller process unpickles the train function by its module: this one imports
neither torch nor the trainers at import time (the worker imports them when it runs), so the
controller starts the workers without importing torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import ray
import ray.train
from ray.train import Checkpoint

from orchestrator.environment import prepare_worker_env

if TYPE_CHECKING:
    from ray.util.queue import Queue

    from trainers.loop.plan import RunPlan

NODE_IDS_KEY = "node_ids"  # a worker group's Ray node ids (comma-separated in Tune results)
ZERO_STAGE_KEY = "zero_stage"  # the ZeRO stage the workers train at (deepspeed.zero_stage: auto)
ZERO_REASON_KEY = "zero_stage_reason"  # why: "configured", or what auto chose it for
MODEL_KEY = "model"  # the config's model section: auto's stage depends on it too
DATA_PARAMS_KEY = "data_params"  # a Tune trial's data report (its MLflow params, as JSON)


def train_worker(loop_config: dict[str, Any]) -> None:
    """Body of every Ray Train worker: engines and the loop on the driver's data and split."""
    # The plan's arrays come read-only from the object store, shared by the node's workers (the
    # loop never writes them): one copy of the table a node, not one a worker.
    plan: RunPlan = ray.get(loop_config["plan"])
    prepare_worker_env(plan.loop.use_gpu, loop_config["log_level"])
    from trainers.config import OptimConfig
    from trainers.engine.clock import RunClock
    from trainers.engine.deepspeed_engine import DeepSpeedEngine
    from trainers.loop.trainer import Trainer, TrainingDiverged, build_replicas
    from trainers.loop.zero_stage import resolve_zero_stage

    events: Queue | None = loop_config["events"]
    report_every_round = events is None
    context = ray.train.get_context()
    rank, world_size = context.get_world_rank(), context.get_world_size()
    # Each worker decides deepspeed.zero_stage: auto as every other does (it counts the model's
    # parameters with torch, which the driver need not import before the workers start).
    plan, zero_reason = resolve_zero_stage(plan, loop_config[MODEL_KEY], world_size)
    settings = plan.loop

    def make_engine(model, name: str, clock: RunClock, optim: OptimConfig) -> DeepSpeedEngine:
        return DeepSpeedEngine(
            model,
            ds=settings.deepspeed,
            optim=optim,
            micro_batch=settings.micro_batch,
            clock=clock,
        )

    node_ids = _worker_node_ids(world_size)
    placement: dict[str, Any] = {
        NODE_IDS_KEY: ",".join(node_ids),
        ZERO_STAGE_KEY: str(settings.deepspeed.zero_stage),  # a string: a tag, not a metric
    }
    if loop_config.get(DATA_PARAMS_KEY):
        placement[DATA_PARAMS_KEY] = loop_config[DATA_PARAMS_KEY]

    decided: dict[str, float] = {}

    def send(event: tuple[str, dict]) -> None:
        """Queue a round's event without waiting for the queue's answer: rank 0 waiting a few
        milliseconds a round would hold every other rank at the next collective."""
        assert events is not None
        events.actor.put.remote(event)  # type: ignore[attr-defined]

    def report(metrics: dict[str, float], checkpoint_dir: Path | None) -> None:
        if rank == 0 and events is not None:
            samples = trainer.evaluator.samples  # a generative model's rows of this evaluation
            if samples is not None and "round" in metrics:
                send(("samples", {"round": metrics["round"], "rows": samples.tolist()}))
                trainer.evaluator.samples = None
            if "round" in metrics:
                send(("round", metrics))
            else:  # the queue runs puts in order: once this one is in, every round's is
                events.put(("final", metrics))
        # A Tune trial learns where its workers run (and its data's report) from its first
        # report after each start.
        reported = {**metrics, **placement} if report_every_round else metrics
        if report_every_round:  # Tune's schedulers read val_loss every round: the latest
            tune_val_loss(reported, decided)
            if "val_loss" not in reported:  # before the first evaluation (strategy.eval_every)
                return  # nothing for a scheduler yet (nor a checkpoint worth resuming)
        placement.clear()
        if checkpoint_dir is not None:
            ray.train.report(reported, checkpoint=Checkpoint.from_directory(str(checkpoint_dir)))
        elif report_every_round:  # a Tune trial: each round is a result for the scheduler
            ray.train.report(reported)

    trainer = Trainer(plan, build_replicas(plan, make_engine), report)
    # The run's own latest checkpoint (after a restart) comes first, then the one it started from.
    checkpoint = ray.train.get_checkpoint() or loop_config.get("start_from")
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            trainer.restore(Path(directory))
    if rank == 0 and events is not None:
        started = {"round": float(trainer.state.next_round), NODE_IDS_KEY: node_ids}
        zero = {ZERO_STAGE_KEY: settings.deepspeed.zero_stage, ZERO_REASON_KEY: zero_reason}
        events.put(("started", started | zero))
    try:
        trainer.run()
    except TrainingDiverged as exc:  # deterministic: retrying would diverge again
        if events is None:
            raise
        if rank == 0:
            events.put(("diverged", {"round": float(exc.round_number), "message": str(exc)}))


def tune_val_loss(reported: dict[str, float], decided: dict[str, float]) -> None:
    """A round without a decision (a large V is scored in slices) reports the latest val_loss
    on all of V, or before the first one its slice's, for Tune's schedulers to read."""
    if "val_loss" in reported:
        decided["val_loss"] = reported["val_loss"]
    elif "round" in reported:
        latest = decided.get("val_loss", reported.get("val/slice_loss"))
        if latest is not None:
            reported["val_loss"] = latest


def _worker_node_ids(world_size: int) -> list[str]:
    """The distinct Ray node ids the worker group runs on, sorted (every rank takes part)."""
    import torch.distributed as dist

    node_id = ray.get_runtime_context().get_node_id()
    if world_size == 1 or not dist.is_initialized():
        return [node_id]
    everyone: list[str | None] = [None] * world_size
    dist.all_gather_object(everyone, node_id)
    return sorted({str(found) for found in everyone})
