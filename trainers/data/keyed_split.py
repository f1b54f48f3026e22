"""The split by a stable hash of a row key (``data.split: hash``): T, V, red and blue as
docs/red-blue.md defines them, decided row by row from the key alone, so that a pipeline that
never holds the table (``data.streaming``) and the in-memory path agree on every row.

A row's key is the value of ``data.row_key``, or its position in its file with the file's path
relative to the source (so parts added beside it move no row). The key is hashed with pandas'
stable ``hash_array`` and mixed with the seed; the hash, read as a number u in [0, 1), picks the
part: T below ``test_fraction``, then V for ``val_fraction`` of the pool, then red for
``red_ratio`` of the rest, else blue. A second hash picks the worker that streams the row. The
shares are expected, not exact (the hash is not stratified by class).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from trainers.dataset import Split

if TYPE_CHECKING:
    import pandas as pd

TEST, VAL, RED, BLUE = 0, 1, 2, 3  # part codes
PART_NAMES = {TEST: "test", VAL: "val", RED: "red", BLUE: "blue"}
PART_CODES = {name: code for code, name in PART_NAMES.items()}
SHARD_SALT = np.uint64(0x9E3779B97F4A7C15)  # a second, independent hash of the same key


@dataclass(frozen=True)
class HashSplit:
    """The shares that turn a row's hash into its part."""

    test_fraction: float
    val_fraction: float
    red_ratio: float
    seed: int

    def hashes(self, keys: np.ndarray | pd.Series) -> np.ndarray:
        """The seeded uint64 hash of each key."""
        from pandas.util import hash_array

        raw = hash_array(np.asarray(keys))
        return hash_array(raw ^ _seed_mix(self.seed))

    def parts(self, hashes: np.ndarray) -> np.ndarray:
        """Each row's part code (``TEST``, ``VAL``, ``RED``, ``BLUE``) from its hash."""
        u = (hashes >> np.uint64(11)).astype(np.float64) * 2.0**-53
        pool_start = self.test_fraction
        val_end = pool_start + (1.0 - pool_start) * self.val_fraction
        in_train = (u - val_end) / (1.0 - val_end)
        codes = np.where(in_train < self.red_ratio, RED, BLUE).astype(np.int8)
        codes[u < val_end] = VAL
        codes[u < pool_start] = TEST
        return codes

    @staticmethod
    def shards(hashes: np.ndarray, world_size: int) -> np.ndarray:
        """Which of ``world_size`` workers streams each row."""
        from pandas.util import hash_array

        return (hash_array(hashes ^ SHARD_SALT) % np.uint64(world_size)).astype(np.int64)


def position_keys(path: str, positions: np.ndarray) -> np.ndarray:
    """The keys of rows at ``positions`` (0-based, among the file's data rows) of the file at
    ``path`` (relative to the source)."""
    from pandas.util import hash_array

    path_hash = hash_array(np.array([path], dtype=object))[0]
    return hash_array(np.asarray(positions, dtype=np.uint64)) ^ path_hash


def _seed_mix(seed: int) -> np.uint64:
    from pandas.util import hash_array

    return hash_array(np.array([seed], dtype=np.int64))[0]


def split_by_hash(keys: np.ndarray, how: HashSplit) -> Split:
    """The in-memory Split of rows with these ``keys`` (``data.split: hash``)."""
    codes = how.parts(how.hashes(keys))
    return Split(
        test=np.flatnonzero(codes == TEST),
        val=np.flatnonzero(codes == VAL),
        red=np.flatnonzero(codes == RED),
        blue=np.flatnonzero(codes == BLUE),
    )
