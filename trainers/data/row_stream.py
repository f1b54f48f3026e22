"""What a streamed table's plan holds for the workers (``data.streaming``): the stream of each
part's rows (implemented with Ray Data by ``orchestrator.streaming.rows``; the compute layer
knows only this protocol), the parts' sizes, and the standardization fitted over P'. No torch."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from trainers.data.streamed_table import Standardization

Batch = tuple[np.ndarray, np.ndarray]  # encoded features (float32), labels
PartBatch = tuple[np.ndarray, np.ndarray, np.ndarray]  # features, labels, each row's part code
PARTS_OF = {"standard": ("red", "blue")}  # a replica's parts, when not the one it is named by


class RowStream(Protocol):
    """Parts' rows, streamed: ``parts`` among test, val, red and blue."""

    def batches(
        self,
        parts: tuple[str, ...],
        *,
        epoch: int,
        batch_size: int,
        rank: int,
        world_size: int,
        skip: int,
    ) -> Iterator[Batch]:
        """This worker's shard of the rows of ``parts``, in batches of ``batch_size`` rows (the
        last one may be smaller), in epoch ``epoch``'s order, its first ``skip`` batches left
        out."""
        ...

    def scored_batches(
        self, parts: tuple[str, ...], *, batch_size: int, rank: int, world_size: int
    ) -> Iterator[PartBatch]:
        """This worker's shard of the rows of ``parts`` in their stored order, each row with its
        part's code (``trainers.data.keyed_split``): several parts scored in one pass."""
        ...


@dataclass(frozen=True)
class StreamPlan:
    """What a streamed run's workers read beside the plan's in-memory sample."""

    rows: RowStream
    sizes: dict[str, int]  # rows of test, val, red and blue
    standardization: Standardization
    fingerprint: str  # of the source's parts and the split, to refuse resuming on other data
