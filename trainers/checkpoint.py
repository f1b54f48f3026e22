"""What a checkpoint holds besides the engines: the loop's counters and every worker's RNG state.

Layout of one checkpoint folder (Ray Train merges the workers' folders into one):

    red/, blue/ (standard/)   engine checkpoints (weights, optimizer, lr schedule), one per replica
    loop_state.json           round counter, steps, early-stopping state, split fingerprint
    rng_rank{N}.pt            torch RNG state of worker N (dropout)
    final_model/              in the final checkpoint: weights.safetensors + model_config.json
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

STATE_FILE = "loop_state.json"
FINAL_MODEL_DIR = "final_model"


@dataclass
class LoopState:
    """Counters that, with the engines and RNG states, let a run continue exactly."""

    next_round: int = 0
    steps: dict[str, int] = field(default_factory=dict)
    best_val_loss: float = float("inf")
    evals_since_best: int = 0
    split_fingerprint: str = ""
    final_metrics: dict[str, float] | None = None  # set in the final checkpoint only


def checkpoint_due(round_index: int, every_rounds: int) -> bool:
    """Checkpoint after every ``every_rounds``-th round (``round_index`` is 0-based)."""
    return (round_index + 1) % every_rounds == 0


def write_state(directory: Path, state: LoopState, rank: int) -> None:
    """Rank 0 writes the shared counters; every rank writes its own RNG state."""
    directory.mkdir(parents=True, exist_ok=True)
    if rank == 0:
        (directory / STATE_FILE).write_text(json.dumps(asdict(state)))
    torch.save({"torch": torch.get_rng_state()}, directory / f"rng_rank{rank}.pt")


def read_state(directory: Path, rank: int) -> LoopState:
    """Read the counters and restore this rank's RNG state (if the checkpoint has one for it)."""
    state = LoopState(**json.loads((directory / STATE_FILE).read_text()))
    rng_file = directory / f"rng_rank{rank}.pt"
    if rng_file.exists():
        torch.set_rng_state(torch.load(rng_file, weights_only=True)["torch"])
    return state
