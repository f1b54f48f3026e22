"""The loop's side of a streamed table (``data.streaming``): what it asks of the stream, where
each replica is in it (saved in checkpoints, so a resumed run continues with exactly the batches
it would have seen), and scoring whole parts as they stream by (by additive sums: no row is kept).

The stream itself (``orchestrator.streaming.rows``: Ray Data reading the source's files on the
cluster) is handed in through the plan (``trainers.data.row_stream``). Each worker streams its own
shard of a part (rows whose hash picks its rank), in an order fixed by the seed and the epoch.
No Ray, no MLflow.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch

from trainers.data.keyed_split import PART_CODES, PART_NAMES
from trainers.data.row_stream import PARTS_OF, Batch, StreamPlan
from trainers.engine import distributed
from trainers.engine.base import Replica
from trainers.families.summed_metrics import Sums, added


@dataclass
class Cursor:
    """Where a replica is in its stream: the epoch, and batches taken in it."""

    epoch: int = 0
    batches: int = 0


@dataclass
class TrainingStreams:
    """Each replica's batches, as an endless stream of epochs over its part's shard."""

    plan: StreamPlan
    batch_size: int
    rank: int
    world_size: int
    cursors: dict[str, Cursor] = field(default_factory=dict)
    _open: dict[str, Iterator[Batch]] = field(default_factory=dict)

    def next(self, replica: str) -> Batch:
        """The replica's next batch (red and blue stream their halves; standard both)."""
        cursor = self.cursors.setdefault(replica, Cursor())
        for _ in range(2):
            stream = self._open.get(replica)
            if stream is None:
                stream = self._open[replica] = self._start(replica, cursor)
            batch = next(stream, None)
            if batch is not None:
                cursor.batches += 1
                return batch
            del self._open[replica]  # the epoch is over
            cursor.epoch, cursor.batches = cursor.epoch + 1, 0
        raise RuntimeError(
            f"worker {self.rank} streams no rows of the {replica} part: its shard is empty "
            f"(the part has {self._size(replica)} rows over {self.world_size} workers)"
        )

    def positions(self) -> dict[str, list[int]]:
        """The cursors, for a checkpoint."""
        return {name: [c.epoch, c.batches] for name, c in self.cursors.items()}

    def restore(self, positions: dict[str, list[int]]) -> None:
        self._open.clear()
        self.cursors = {name: Cursor(*position) for name, position in positions.items()}

    def _start(self, replica: str, cursor: Cursor) -> Iterator[Batch]:
        return self.plan.rows.batches(
            PARTS_OF.get(replica, (replica,)),
            epoch=cursor.epoch,
            batch_size=self.batch_size,
            rank=self.rank,
            world_size=self.world_size,
            skip=cursor.batches,
        )

    def _size(self, replica: str) -> int:
        return sum(self.plan.sizes[part] for part in PARTS_OF.get(replica, (replica,)))


Scoring = dict[str, tuple[Replica, tuple[str, ...]]]  # a name -> a replica, the parts it scores


@torch.no_grad()
def summed_parts(
    plan: StreamPlan, scoring: Scoring, objective, width: int, batch_size: int
) -> dict[str, Sums]:
    """For each name of ``scoring``, the objective's sums (``trainers.families.summed_metrics``)
    of its replica's outputs on every row of its parts, the same on every worker. One pass over
    the table scores them all: each worker sums its shard batch by batch as it streams by,
    keeping no row, then the workers add their sums up. The workers take the same number of
    forward passes (ZeRO-3 gathers weights in each), the ones whose shard ended first on an
    empty stand-in."""
    rank, world_size = distributed.world()
    replicas = {id(replica): replica for replica, _ in scoring.values()}
    for replica in replicas.values():
        for engine in replica.values():
            engine.module.eval()
    wanted = {PART_CODES[part] for _, parts in scoring.values() for part in parts}
    stream = plan.rows.scored_batches(
        tuple(PART_NAMES[code] for code in sorted(wanted)),
        batch_size=batch_size,
        rank=rank,
        world_size=world_size,
    )
    totals: dict[str, Sums | None] = dict.fromkeys(scoring)
    stand_in = np.zeros((1, width), dtype=np.float32)
    while True:
        batch = next(stream, None)
        if not distributed.any_true(batch is not None):
            break
        features = torch.as_tensor(batch[0] if batch else stand_in)
        outputs = {key: objective.outputs(replica, features) for key, replica in replicas.items()}
        for name, (replica, parts) in scoring.items():
            if batch is None:
                rows = torch.zeros(len(features), dtype=torch.bool)
                targets = torch.zeros(0, dtype=torch.long)
            else:
                rows = torch.as_tensor(np.isin(batch[2], [PART_CODES[p] for p in parts]))
                targets = torch.as_tensor(batch[1])[rows]
            summary = objective.summary(outputs[id(replica)][rows], targets)
            totals[name] = added(totals[name], summary)
    done = {name: total for name, total in totals.items() if total is not None}
    if len(done) < len(totals):
        raise RuntimeError(f"no worker streams a row of {sorted(wanted)}")
    flat = {f"{name}/{key}": value for name, total in done.items() for key, value in total.items()}
    summed = distributed.all_reduce_arrays(flat)
    return {name: {key: summed[f"{name}/{key}"] for key in total} for name, total in done.items()}
