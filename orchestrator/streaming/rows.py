"""Rows of a streamed table, read with Ray Data on the cluster: the keyed batches of one file
(:func:`keyed_batches`, read by a Ray Data task where the file is reachable, never first on the
driver), and :class:`StreamedRows`, the ``trainers.data.row_stream.RowStream`` each worker reads
its shard of a part from.

A worker's stream reads the files one after another, in an order drawn per epoch from the seed,
each by a Ray Data pipeline of its own: one task that keeps the rows of the wanted parts whose
hash picks this worker and encodes them with the fitted preprocessing, each read batch in an
order drawn from (seed, epoch, rank, file, batch). The order is a function of the seed alone, so
a resumed run skips exactly the batches it had taken. The tasks take no CPU reservation: the
training workers hold theirs, and reading runs beside them.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, cast

import numpy as np

from trainers.data.keyed_split import PART_CODES
from trainers.data.preprocessing import Preprocessing
from trainers.data.row_stream import PartBatch
from trainers.data.sources import Parts, relative_path
from trainers.data.streamed_table import encode_labels
from trainers.data.table_stats import KeyedRows, Layout, keyed_rows
from trainers.errors import DataError, InputError

READ_ROWS = 65_536  # rows per batch read from a file (and shuffled: a worker's share of them)
STREAM_BUFFER_BYTES = 256 * 1024**2  # what a stream may hold in the object store, read ahead
BLOCK_BYTES = 16 * 1024**2  # a reading task's output block (Ray Data's default: 128 MiB)
FETCH_ROWS = 8192  # rows a worker takes from Ray Data at once (then cut into its batches)
ORDER_STREAM = 7  # seeds the files' order per epoch (after the split's and the slices' streams)


def keyed_batches(
    parts: Parts,
    layout: Layout,
    path: str,
    wanted: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
) -> Iterator[KeyedRows]:
    """The kept rows of the file at ``path`` (only the ``wanted`` ones, when given: see
    ``trainers.data.table_stats.keyed_rows``), batch by batch, keyed and split."""
    offset = 0
    name = relative_path(parts.base, path)
    try:
        for batch in parts.part(path).to_batches(batch_size=READ_ROWS, **read_options(parts)):
            yield keyed_rows(batch, layout, name, offset, wanted)
            offset += batch.num_rows
    except (DataError, InputError) as exc:
        raise DataError(f"{name}: {exc}") from None
    except OSError as exc:
        raise DataError(f"cannot read {name} of data.source {parts.source!r}: {exc}") from None
    finally:
        release_arrow_memory()


def read_options(parts: Parts) -> dict[str, Any]:
    """How a file's batches are read: two read ahead and one file at a time (Arrow's defaults are
    16 and 4), and a Parquet file on a local disk read a column chunk at a time, without first
    buffering the whole row group. Arrow then holds about 60 MB to read a file of a million rows
    of 33 columns, against about 320 MB with its defaults, and reads it as fast. A remote file
    keeps the buffering, which makes one request of a row group's many column chunks."""
    import pyarrow.dataset as ds
    from pyarrow.fs import LocalFileSystem

    options: dict[str, Any] = {"batch_readahead": 2, "fragment_readahead": 1}
    if parts.format == "parquet" and isinstance(parts.filesystem, LocalFileSystem):
        options["fragment_scan_options"] = ds.ParquetFragmentScanOptions(pre_buffer=False)
    return options


def release_arrow_memory() -> None:
    """Hands the memory Arrow's allocator keeps after a file is read back to the system: kept,
    it is about 350 MB in each process that has read a file of a million rows, and a stream's
    reading tasks run in several processes at once."""
    import pyarrow

    pyarrow.default_memory_pool().release_unused()


def configure_ray_data() -> None:
    """This process's Ray Data: outputs in order (a stream's order is then the seed's), a bounded
    read-ahead in the object store, small blocks (a reading task holds what it has encoded
    until a block is full), no progress bars (the loop prints its own rounds), and a
    task's own exception raised (not wrapped in Ray Data's ``UserCodeException``)."""
    import logging

    from ray.data import DataContext, ExecutionResources

    context = DataContext.get_current()
    for name in ("ray.data", "ray.data._internal.progress"):  # "progress bars disabled"
        logging.getLogger(name).setLevel(logging.ERROR)
    context.execution_options.preserve_order = True
    context.execution_options.resource_limits = ExecutionResources(
        object_store_memory=STREAM_BUFFER_BYTES
    )
    context.target_max_block_size = BLOCK_BYTES
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    context.raise_original_map_exception = True  # a DataError comes back as itself


@dataclass(frozen=True)
class StreamedRows:
    """Parts' rows streamed into a worker (``trainers.data.row_stream.RowStream``)."""

    parts: Parts
    layout: Layout
    preprocessing: dict  # the fitted Preprocessing, as JSON
    task: str
    classes: list
    seed: int

    def batches(
        self,
        parts: tuple[str, ...],
        *,
        epoch: int,
        batch_size: int,
        rank: int,
        world_size: int,
        skip: int,
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        training = set(parts) <= {"red", "blue"}
        paths = list(self.parts.paths)
        if training:  # a new order of the files each epoch
            order = np.random.default_rng([self.seed, ORDER_STREAM, epoch]).permutation(len(paths))
            paths = [paths[i] for i in order]
        shuffle = (self.seed, epoch, rank) if training else None
        encode = _Encode(self, tuple(PART_CODES[p] for p in parts), rank, world_size, shuffle)
        for number, (features, labels, _) in enumerate(self._stream(paths, encode, batch_size)):
            if number >= skip:
                yield features, labels

    def scored_batches(
        self, parts: tuple[str, ...], *, batch_size: int, rank: int, world_size: int
    ) -> Iterator[PartBatch]:
        encode = _Encode(self, tuple(PART_CODES[p] for p in parts), rank, world_size)
        return cast(Iterator[PartBatch], self._stream(list(self.parts.paths), encode, batch_size))

    def _stream(
        self, paths: list[str], encode: _Encode, batch_size: int
    ) -> Iterator[tuple[np.ndarray, ...]]:
        return _rebatched((self._file_rows(path, encode) for path in paths), batch_size)

    def _file_rows(self, path: str, encode: _Encode) -> Iterator[tuple[np.ndarray, ...]]:
        """One file's wanted rows (features, labels, part codes), by a Ray Data pipeline of its
        own: one task, which Ray pauses when it is ahead (a pipeline over many files would, once
        paused, poll in a busy loop in the training process)."""
        import ray.data

        from orchestrator.ray_internals import (
            forget_finished_pipeline,
            leave_pipelines_unrecorded,
        )

        configure_ray_data()
        leave_pipelines_unrecorded()
        dataset = ray.data.from_items([{"path": path}]).map_batches(
            encode, batch_size=1, num_cpus=0, zero_copy_batch=True
        )
        try:
            for batch in dataset.iter_batches(
                batch_size=FETCH_ROWS, batch_format="numpy", prefetch_batches=2
            ):
                yield batch["features"], batch["labels"], batch["parts"]
        finally:
            forget_finished_pipeline()
            release_arrow_memory()


def _rebatched(
    pieces: Iterator[Iterator[tuple[np.ndarray, ...]]], batch_size: int
) -> Iterator[tuple[np.ndarray, ...]]:
    """Batches of exactly ``batch_size`` rows across the files' pieces (the last one smaller);
    a piece is a tuple of arrays of the same rows."""
    held: list[tuple[np.ndarray, ...]] = []
    count = 0
    for piece in (p for file in pieces for p in file):
        held.append(piece)
        count += len(piece[0])
        if count < batch_size:
            continue
        joined = [np.concatenate(arrays) for arrays in zip(*held, strict=True)]
        whole = count - count % batch_size
        for start in range(0, whole, batch_size):
            yield tuple(array[start : start + batch_size] for array in joined)
        held, count = [tuple(array[whole:] for array in joined)], count - whole
    if count:
        yield tuple(np.concatenate(arrays) for arrays in zip(*held, strict=True))


class _Encode:
    """A Ray Data task's work on one file: the rows of the wanted parts that this worker streams,
    encoded as the model takes them."""

    def __init__(
        self,
        rows: StreamedRows,
        codes: tuple[int, ...],
        rank: int,
        world: int,
        shuffle: tuple[int, int, int] | None = None,
    ):
        self.rows, self.codes, self.rank, self.world = rows, codes, rank, world
        self.shuffle = shuffle  # (seed, epoch, rank): each batch's rows in a seeded order

    def __call__(self, batch: dict[str, Any]) -> Iterator[dict[str, np.ndarray]]:
        rows = self.rows
        fitted = Preprocessing.from_dict(rows.preprocessing)
        for path in batch["path"]:
            batches = keyed_batches(rows.parts, rows.layout, str(path), self._mine)
            for number, keyed in enumerate(batches):
                if not len(keyed.parts):
                    continue
                features = fitted.transform(keyed.features)
                labels = encode_labels(keyed.labels.to_numpy(), rows.task, rows.classes)
                codes = keyed.parts
                if self.shuffle is not None:
                    stream = [*self.shuffle, zlib.crc32(str(path).encode()), number]
                    order = np.random.default_rng(stream).permutation(len(labels))
                    features, labels, codes = features[order], labels[order], codes[order]
                yield {"features": features, "labels": labels, "parts": codes}

    def _mine(self, hashes: np.ndarray, parts: np.ndarray) -> np.ndarray:
        """The rows of the wanted parts that this worker streams."""
        shards = self.rows.layout.how.shards(hashes, self.world)
        return np.isin(parts, self.codes) & (shards == self.rank)
