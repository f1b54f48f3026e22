"""The training loop: the standard and red-blue strategies as docs/red-blue.md defines.

Plain PyTorch + engines (``trainers.engine``); no Ray, no MLflow. The caller hands in a
``report(metrics, checkpoint_dir)`` callable and gets a ``TrainOutcome`` back. Every worker runs
this same code on its shard of each part; evaluation runs on the whole (small) V, R, B and T on
every worker so that all workers take the same collective steps under ZeRO-3.
"""

from __future__ import annotations

import math
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from trainers.compress.distilling import Distilling
from trainers.config import OptimConfig
from trainers.data.batches import batch_indices, shard
from trainers.engine import distributed
from trainers.engine.base import Engine, Replica
from trainers.engine.checkpoint import (
    LoopState,
    checkpoint_due,
    read_best,
    read_positions,
    read_state,
    write_positions,
    write_state,
)
from trainers.engine.clock import RunClock
from trainers.engine.fusion import Snapshot, engines, fuse_into_both
from trainers.families.scaled import Scaled
from trainers.loop.cleaning import Cleaning
from trainers.loop.evaluation import Evaluator
from trainers.loop.plan import RunPlan
from trainers.loop.streamed import TrainingStreams
from trainers.models import save_model
from trainers.spec import FINAL_MODEL_DIR

Report = Callable[[dict[str, float], "Path | None"], None]
COLOR_STREAM = {"red": 1, "blue": 2, "standard": 3}


class TrainingDiverged(RuntimeError):
    """A training loss became NaN or infinite."""

    def __init__(self, round_number: int, replica: str) -> None:
        super().__init__(
            f"training diverged: the {replica} loss became NaN or infinite in round {round_number}"
        )
        self.round_number = round_number


@dataclass
class TrainOutcome:
    """What the loop returns on every worker (the final model files only on rank 0)."""

    metrics: dict[str, float]
    rounds_run: int
    stopped_early: bool


def shared(array: np.ndarray) -> torch.Tensor:
    """A tensor over ``array``'s memory, also when it is read-only (a worker's plan, shared
    through Ray's object store): the loop reads the data, it never writes it."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.as_tensor(array)


MakeEngine = Callable[[torch.nn.Module, str, RunClock, OptimConfig], Engine]


def build_replicas(plan: RunPlan, make_engine: MakeEngine) -> dict[str, Replica]:
    """The replicas (red and blue, or standard) from one initialization (same seed), fitted on
    the training pool P' by their family: an engine per network of the family, each with its
    optimizer settings (``Family.network_optim``)."""
    family, dataset, train = plan.family, plan.dataset, plan.split.train
    targets = dataset.labels[train] if plan.spec.task == "regression" else None
    options = plan.spec.options
    replicas = {}
    for name in plan.rounds.steps_per_replica:
        torch.manual_seed(plan.loop.seed)
        model = family.build(plan.spec)
        if plan.stream is not None:  # fitted by the stream's pass over P'
            assert isinstance(model, Scaled)
            model.set_standardization(plan.stream.standardization)
        else:
            family.fit(model, dataset.features[train], targets)
        if plan.initial_state is not None:  # a pruned teacher's weights (redblue compress)
            model.load_state_dict({k: torch.tensor(v) for k, v in plan.initial_state.items()})
        clock = plan.rounds.clock(name)
        replicas[name] = {
            network: make_engine(
                module, name, clock, family.network_optim(network, plan.loop.optim, options)
            )
            for network, module in family.networks(model).items()
        }
    return replicas


class Trainer:
    """Runs the rounds for one worker. ``run()`` is the whole algorithm; helpers do one thing."""

    def __init__(self, plan: RunPlan, replicas: dict[str, Replica], report: Report) -> None:
        self.cfg, self.spec, self.split, self.rounds = plan.loop, plan.spec, plan.split, plan.rounds
        self.family, self.report = plan.family, report
        self.reference_metrics = plan.reference_metrics
        self.replicas = replicas
        cfg, split, dataset = plan.loop, plan.split, plan.dataset
        self.red_blue = cfg.strategy.kind == "red_blue"
        self.rank, self.world_size = distributed.world()
        self.features, self.labels = shared(dataset.features), shared(dataset.labels)
        self.micro_batch = cfg.micro_batch
        parts = {"red": split.red, "blue": split.blue, "standard": split.train}
        self.local_parts = {
            name: shard(parts[name], self.rank, self.world_size) for name in replicas
        }
        self.stream = plan.stream  # a streamed table: dataset and split are its sample's
        self.streams = (
            TrainingStreams(plan.stream, self.micro_batch, self.rank, self.world_size)
            if plan.stream is not None
            else None
        )
        first = next(iter(replicas.values()))
        self.objective = self.family.objective(
            self.spec, self._whole_model(first), plan.class_weights
        )
        if plan.teacher is not None:  # distillation (redblue compress)
            device = next(self._whole_model(first).parameters()).device
            self.objective = Distilling.of(self.objective, plan.teacher, self.spec.task, device)
        self.first_step_at: float | None = None
        self.finished_at: Path | None = None  # a restored final checkpoint
        self.best: Snapshot | None = None  # the best evaluation's replicas (select: best)
        classifies = self.red_blue and self.spec.task == "classification" and not self.stream
        self.cleaning = Cleaning(plan) if classifies else None  # cross-predictions, label issues
        data = (self.features, self.labels)
        self.evaluator = Evaluator(cfg, split, self.objective, data, self.cleaning, plan.stream)
        fingerprint = plan.stream.fingerprint if plan.stream else split.fingerprint()
        self.state = LoopState(steps={name: 0 for name in replicas}, split_fingerprint=fingerprint)

    # -- the algorithm -------------------------------------------------------------------------
    def run(self) -> TrainOutcome:
        """Train from ``state.next_round`` to the end; returns the final (test) metrics."""
        if self.finished_at is not None:
            return self._report_finished(self.finished_at)
        metrics: dict[str, float] = {}
        stopped_early = False
        last_round = self.rounds.num_rounds - 1
        round_index = first_round = self.state.next_round
        while round_index <= last_round:
            started = time.perf_counter()
            metrics = self._train_round(round_index)
            metrics["samples_per_s"] = self._samples_per_round() / (time.perf_counter() - started)
            metrics["epoch"] = self._epochs_done(round_index + 1)
            if round_index == first_round and self.first_step_at is not None:
                metrics["first_step_at"] = self.first_step_at
            is_last = round_index == last_round
            if is_last or (round_index + 1) % self.cfg.strategy.eval_every == 0:
                decided = self._evaluate(round_index, metrics, is_last)
                stopped_early = decided and self._record_evaluation(round_index, metrics)
                is_last = is_last or stopped_early
            if self.red_blue and not is_last:  # the end's fusion is the kept model's (_finish)
                self._fuse_if_due(round_index, metrics)
            self.state.next_round = round_index + 1
            self.state.train_seconds += time.perf_counter() - started
            due = not is_last and checkpoint_due(round_index, self.cfg.checkpoint_every)
            self._report(metrics, self._write_checkpoint() if due else None)
            if is_last:
                break
            round_index += 1
        final = self._finish()
        return TrainOutcome(final, rounds_run=self.state.next_round, stopped_early=stopped_early)

    # -- one round -----------------------------------------------------------------------------
    def _train_round(self, round_index: int) -> dict[str, float]:
        metrics: dict[str, float] = {"round": float(round_index + 1)}
        names = ("train_loss", *getattr(self.objective, "extra_losses", ()))
        for name, replica in self.replicas.items():
            losses = self._train_phase(name, replica, self.rounds.steps_per_replica[name])
            if not all(math.isfinite(loss) for loss in losses):
                raise TrainingDiverged(round_index + 1, name)
            for loss_name, loss in zip(names, losses, strict=True):
                metrics[loss_name if name == "standard" else f"{name}/{loss_name}"] = loss
            if self.red_blue:
                metrics[f"{name}/lr"] = self._lr(replica)
        # Schedules run on the round clock: at the end of a round every replica has this lr.
        metrics["lr"] = self._lr(next(iter(self.replicas.values())))
        return metrics

    def _train_phase(self, name: str, replica: Replica, steps: int) -> list[float]:
        """``steps`` optimizer steps of one replica on its part; returns the mean loss (and the
        objective's ``extra_losses``, a GAN's discriminator loss)."""
        for engine in replica.values():
            engine.module.train()
        stream = (self.cfg.seed, COLOR_STREAM[name], self.rank)
        first_batch = self.state.steps[name] * self.cfg.grad_accum_steps
        total = torch.zeros((), dtype=torch.float64)
        micro_steps = steps * self.cfg.grad_accum_steps
        for offset in range(micro_steps):
            if self.streams is not None:
                features, labels = self.streams.next(name)
                loss = self.objective.train_step(replica, shared(features), shared(labels), None)
            else:
                index = batch_indices(
                    self.local_parts[name], self.micro_batch, first_batch + offset, stream
                )
                weights = self.cleaning.weights(index) if self.cleaning is not None else None
                loss = self.objective.train_step(
                    replica, self.features[index], self.labels[index], weights
                )
            if self.first_step_at is None:
                self.first_step_at = time.time()  # start-up cost, reported once per attempt
            total = total + loss.detach().double().cpu().reshape(-1)
        self.state.steps[name] += steps
        return distributed.all_reduce_mean([float(value) / micro_steps for value in total])

    def _evaluate(self, round_index: int, metrics: dict[str, float], is_last: bool) -> bool:
        """Score this evaluation (``trainers.loop.evaluation``: slices of large parts), flag
        label issues; returns whether it decided (scored all of V: the last one always does)."""
        evaluation = self.state.evaluations
        decide = is_last or self.evaluator.slices.decision_due(evaluation)
        metrics.update(self.evaluator.evaluate(self.replicas, evaluation, decide))
        self.state.evaluations += 1
        self.state.last_alpha = metrics.get("fusion/alpha", 0.5)
        if self.cleaning is not None and self.evaluator.slices.halves_covered(evaluation):
            metrics.update(self.cleaning.evaluate(round_index + 1))
        return decide

    def _fuse_if_due(self, round_index: int, metrics: dict[str, float]) -> None:
        """Periodic fusion (``strategy.fuse_every``), with this round's alpha (from its
        evaluation, or from the held-out losses now)."""
        every = self.cfg.strategy.fuse_every
        if every > 0 and (round_index + 1) % every == 0:
            alpha = metrics.get("fusion/alpha")
            if alpha is None:
                alpha = self.evaluator.alpha_now(self.replicas, self.state.evaluations)
            fuse_into_both(self.replicas["red"], self.replicas["blue"], alpha)

    def _record_evaluation(self, round_index: int, metrics: dict[str, float]) -> bool:
        """Track the best evaluation (and keep its replicas, with ``checkpoint.select: best``);
        early stopping on val_loss after ``optim.patience`` evaluations without improvement."""
        self.state.val_losses.append(metrics["val_loss"])
        if metrics["val_loss"] < self.state.best_val_loss:
            self.state.best_val_loss, self.state.evals_since_best = metrics["val_loss"], 0
            self.state.best_round, self.state.best_alpha = round_index + 1, self.state.last_alpha
            if self.cfg.select == "best":
                self.best = Snapshot.take(self.replicas)
        else:
            self.state.evals_since_best += 1
        patience = self.cfg.optim.patience
        return patience > 0 and self.state.evals_since_best >= patience

    def _finish(self) -> dict[str, float]:
        """Test the kept model (the fused one for red-blue) and save it as weights + config.

        The kept model is the best evaluation's (``checkpoint.select: best``): its replicas are
        restored, then scored on T and fused with that evaluation's alpha; or the last one's.
        """
        alpha, kept_round = self.state.last_alpha, self.state.next_round
        if self.best is not None:
            self.best.restore(self.replicas)
            alpha, kept_round = self.state.best_alpha, self.state.best_round
        final: dict[str, float] = {"best_round": float(kept_round)}
        if self.red_blue:
            red, blue = self.replicas["red"], self.replicas["blue"]
            each = self.evaluator.test_metrics({"red": red, "blue": blue})
            for name, scores in each.items():
                final.update({f"{name}/{k}": v for k, v in scores.items()})
            fuse_into_both(red, blue, alpha)
        result = next(iter(self.replicas.values()))  # red holds theta_f after the fusion
        final.update(self.evaluator.final_scores(result))
        final.update(self.reference_metrics)  # a forecaster's baselines on the same T
        final["train_seconds"] = self.state.train_seconds
        final.update(self.state.jitter())
        if self.cleaning is not None:
            final.update(self.cleaning.metrics())
        weights = {name: engine.full_state_dict() for name, engine in result.items()}  # collective
        directory = Path(tempfile.mkdtemp(prefix="redblue-final-"))
        if self.rank == 0:
            model = self.family.build(self.spec)
            for network, module in self.family.networks(model).items():
                module.load_state_dict(weights[network])
            save_model(directory / FINAL_MODEL_DIR, model, self.spec)
            if self.cleaning is not None:
                self.cleaning.write_report(directory)
        self.state.final_metrics = final
        write_state(directory, self.state, self.rank)
        self._report(final, directory)
        return final

    # -- helpers -------------------------------------------------------------------------------
    def _whole_model(self, replica: Replica) -> torch.nn.Module:
        """The family's model holding ``replica``'s networks (for its objective to read)."""
        if len(replica) == 1:
            return next(iter(replica.values())).module
        return torch.nn.ModuleDict({name: engine.module for name, engine in replica.items()})

    @staticmethod
    def _lr(replica: Replica) -> float:
        return next(iter(replica.values())).lr()

    def _report_finished(self, directory: Path) -> TrainOutcome:
        """Report the final checkpoint again (a restart after the run had ended)."""
        final = dict(self.state.final_metrics or {})
        self._report(final, directory)
        return TrainOutcome(metrics=final, rounds_run=self.state.next_round, stopped_early=False)

    def _samples_per_round(self) -> int:
        return sum(self.rounds.steps_per_replica.values()) * self.cfg.optim.batch_size

    def _epochs_done(self, rounds: int) -> float:
        if self.stream is not None:
            train_size = self.stream.sizes["red"] + self.stream.sizes["blue"]
        else:
            train_size = len(self.split.red) + len(self.split.blue)  # not split.train: it sorts
        return rounds * self._samples_per_round() / max(1, train_size)

    def _write_checkpoint(self) -> Path:
        directory = Path(tempfile.mkdtemp(prefix="redblue-ckpt-"))
        for tag, engine in engines(self.replicas).items():
            engine.save(directory, tag)
        write_state(directory, self.state, self.rank, self.best.tensors if self.best else None)
        if self.cleaning is not None:
            self.cleaning.save(directory, self.rank)
        if self.streams is not None:
            write_positions(directory, self.rank, self.streams.positions())
        return directory

    def _report(self, metrics: dict[str, float], checkpoint: Path | None) -> None:
        try:
            self.report(dict(metrics), checkpoint)
        finally:
            if checkpoint is not None:
                shutil.rmtree(checkpoint, ignore_errors=True)

    def restore(self, directory: Path) -> None:
        """Continue from a checkpoint written by this loop (engines, counters, RNG)."""
        state = read_state(directory, self.rank)
        if state.split_fingerprint != self.state.split_fingerprint:
            raise RuntimeError(
                "the checkpoint was made on a different data split (seed, data or fractions "
                "changed); refusing to resume"
            )
        self.state = state
        if state.final_metrics is not None:  # the run had finished: nothing left to train
            self.finished_at = Path(tempfile.mkdtemp(prefix="redblue-final-"))
            shutil.copytree(directory, self.finished_at, dirs_exist_ok=True)  # may be temporary
            return
        for tag, engine in engines(self.replicas).items():
            engine.load(directory, tag)
        best = read_best(directory, self.rank)
        self.best = Snapshot(best) if best is not None else None
        if self.cleaning is not None:
            self.cleaning.load(directory, self.rank)
        if self.streams is not None:
            self.streams.restore(read_positions(directory, self.rank))
