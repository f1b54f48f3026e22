"""What a checkpoint holds besides the engines: the loop's counters and every worker's RNG state.

Layout of one checkpoint folder (Ray Train merges the workers' folders into one):

    red/, blue/ (standard/)   engine checkpoints (weights, optimizer, lr schedule), one per replica
    loop_state.json           round counter, steps, early-stopping and best-model state,
                              split fingerprint
    rng_rank{N}.pt            worker N's torch RNG states, CPU and (where used) CUDA: dropout
    best_rank{N}.pt           worker N's copy of the best evaluation's replicas (its partition
                              of their fp32 master weights, and float buffers), with
                              checkpoint.select best
    cross_predictions_rank{N}.npz  red-blue classification: worker N's cross-predictions and
                              label-issue flags (``trainers.loop.cross_predictions``)
    final_model/              in the final checkpoint: weights.safetensors + model_config.json
    label_issues.csv          in the final checkpoint, with strategy.clean: the flagged rows
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from itertools import pairwise
from pathlib import Path

import torch

STATE_FILE = "loop_state.json"


@dataclass
class LoopState:
    """Counters that, with the engines and RNG states, let a run continue exactly."""

    next_round: int = 0
    steps: dict[str, int] = field(default_factory=dict)
    best_val_loss: float = float("inf")
    evals_since_best: int = 0
    best_round: int = 0  # 1-based round of the best evaluation
    best_alpha: float = 0.5  # its fusion weight
    last_alpha: float = 0.5  # the latest evaluation's fusion weight
    train_seconds: float = 0.0  # wall time of the rounds so far (training, evaluation, fusion)
    split_fingerprint: str = ""
    val_losses: list[float] = field(default_factory=list)  # every decision's, in order
    evaluations: int = 0  # evaluations so far (which slices the next one scores)
    final_metrics: dict[str, float] | None = None  # set in the final checkpoint only

    def jitter(self) -> dict[str, float]:
        """``val_loss_jitter``: the mean absolute change of val_loss from one evaluation to the
        next over the second half of the run's evaluations (when it has two at least)."""
        second_half = self.val_losses[len(self.val_losses) // 2 :]
        if len(second_half) < 2:
            return {}
        changes = [abs(b - a) for a, b in pairwise(second_half)]
        return {"val_loss_jitter": sum(changes) / len(changes)}


def checkpoint_due(round_index: int, every_rounds: int) -> bool:
    """Checkpoint after every ``every_rounds``-th round (``round_index`` is 0-based)."""
    return (round_index + 1) % every_rounds == 0


def write_state(
    directory: Path,
    state: LoopState,
    rank: int,
    best: dict[str, list[torch.Tensor]] | None = None,
) -> None:
    """Rank 0 writes the shared counters; every rank writes its RNG states and its part of the
    best evaluation's replicas (``best``, when kept)."""
    directory.mkdir(parents=True, exist_ok=True)
    if rank == 0:
        (directory / STATE_FILE).write_text(json.dumps(asdict(state)))
    torch.save(_rng_states(), directory / f"rng_rank{rank}.pt")
    if best is not None:
        torch.save(best, directory / f"best_rank{rank}.pt")


def read_state(directory: Path, rank: int) -> LoopState:
    """Read the counters and restore this rank's RNG states (if the checkpoint has them)."""
    state = LoopState(**json.loads((directory / STATE_FILE).read_text()))
    rng_file = directory / f"rng_rank{rank}.pt"
    if rng_file.exists():
        saved = torch.load(rng_file, weights_only=True)
        torch.set_rng_state(saved["torch"])
        if saved.get("cuda") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state(saved["cuda"])
    return state


def write_positions(directory: Path, rank: int, positions: dict[str, list[int]]) -> None:
    """This rank's place in its streams (``trainers.loop.streamed``): each its own shard."""
    (directory / f"stream_rank{rank}.json").write_text(json.dumps(positions))


def read_positions(directory: Path, rank: int) -> dict[str, list[int]]:
    """This rank's place in its streams; a checkpoint without one starts them over."""
    path = directory / f"stream_rank{rank}.json"
    return json.loads(path.read_text()) if path.exists() else {}


def read_best(directory: Path, rank: int) -> dict[str, list[torch.Tensor]] | None:
    """This rank's part of the best evaluation's replicas, if the checkpoint holds one."""
    best_file = directory / f"best_rank{rank}.pt"
    return torch.load(best_file, weights_only=True) if best_file.exists() else None


def _rng_states() -> dict[str, torch.Tensor | None]:
    """The generators dropout draws from: the CPU's and, on a GPU worker, its device's."""
    cuda = torch.cuda.get_rng_state() if torch.cuda.is_initialized() else None
    return {"torch": torch.get_rng_state(), "cuda": cuda}
