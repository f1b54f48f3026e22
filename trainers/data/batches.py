"""Which samples a worker trains on: its shard of a part, and the batches of an endless stream
of shuffled epochs over it (stateless, so a resumed run sees exactly the batches it would
have)."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np


def shard(indices: np.ndarray, rank: int, world_size: int) -> np.ndarray:
    """The slice of a part that one worker trains on."""
    return indices[rank::world_size]


def batch_indices(
    part: np.ndarray, batch_size: int, batch_number: int, stream: Sequence[int]
) -> np.ndarray:
    """The ``batch_number``-th batch of an endless stream of shuffled epochs over ``part``.

    Stateless, so a resumed run continues with exactly the batches it would have seen: epoch e is
    a permutation seeded by (*stream, e); its last batch may be smaller.
    """
    batches_per_epoch = -(-len(part) // batch_size)
    epoch, position = divmod(batch_number, batches_per_epoch)
    order = _epoch_order(tuple(stream), epoch, len(part))
    return part[order[position * batch_size : (position + 1) * batch_size]]


@lru_cache(maxsize=8)
def _epoch_order(stream: tuple[int, ...], epoch: int, size: int) -> np.ndarray:
    """Epoch ``epoch``'s permutation of ``size`` rows, drawn once per epoch (not per batch: a
    batch then costs O(batch), not O(rows))."""
    order = np.random.default_rng([*stream, epoch]).permutation(size)
    order.setflags(write=False)
    return order
