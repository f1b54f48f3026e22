"""A streamed table's statistics kept between runs. The pass that computes them reads every row
before the first step (``orchestrator.streaming.plan``); a later run, sweep trial or ``compare``
child over the same files with the same split and columns reads them back instead.

An entry's name is a hash of the files' listing (each one's path, size and modification time:
a file rewritten is a new entry) and of everything the statistics depend on (the label, the
columns and their rules, the split's shares and seed, the sample's size). It is JSON, Parquet
for the samples and ``.npy`` for the values of ``missing: median`` columns: nothing is
unpickled. Entries live in ``$REDBLUE_CACHE`` (else ``$XDG_CACHE_HOME/redblue``, else
``~/.cache/redblue``) under ``table-stats/``, the newest ``KEEP`` of them;
``data.cache_stats: false`` neither reads nor writes them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from trainers.data.sources import Parts
from trainers.data.table_stats import ColumnStats, Layout, Moments, TableStats

FORMAT = 1  # bumped whenever TableStats or this layout on disk changes
KEEP = 32  # entries kept; older ones are removed when one is written
ENTRY_FILE = "stats.json"


def cache_root() -> Path:
    if os.environ.get("REDBLUE_CACHE"):
        return Path(os.environ["REDBLUE_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "redblue"


@dataclasses.dataclass(frozen=True)
class StatsCache:
    """Where one table's statistics are kept (whether or not they are there yet)."""

    folder: Path

    @classmethod
    def of(cls, parts: Parts, layout: Layout, sample_rows: int) -> StatsCache:
        listing = [
            [info.path, info.size, info.mtime_ns]
            for info in parts.filesystem.get_file_info(list(parts.paths))
        ]
        described = {
            "format": FORMAT,
            "files": listing,
            "label": layout.label,
            "kinds": layout.kinds,
            "label_type": layout.label_type,
            "split": dataclasses.asdict(layout.how),
            "data": layout.data.model_dump(
                mode="json", exclude={"streaming", "stream_above", "cache_stats"}
            ),
            "sample_rows": sample_rows,
        }
        name = hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()[:24]
        return cls(cache_root() / "table-stats" / name)

    def load(self) -> TableStats | None:
        """The kept statistics; None when there are none (or they cannot be read)."""
        import pandas as pd

        try:
            record = json.loads((self.folder / ENTRY_FILE).read_text())
            samples = {
                int(code): pd.read_parquet(self.folder / f"sample-{code}.parquet")
                for code in record.pop("samples")
            }
            values = {
                name: [np.load(self.folder / f"values-{index}.npy", allow_pickle=False)]
                for index, name in enumerate(record["columns"])
                if record["columns"][name].pop("has_values")
            }
        except (OSError, ValueError, KeyError):
            return None
        return _stats(record, samples, values)

    def save(self, stats: TableStats) -> None:
        """Keep ``stats`` (written whole, then moved into place: a reader never sees half an
        entry; when another run kept the same entry first, theirs stays)."""
        self.folder.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        staging = Path(tempfile.mkdtemp(dir=self.folder.parent, prefix=".writing-"))
        try:
            record = _record(stats)
            for code, frame in stats.samples.items():
                frame.to_parquet(staging / f"sample-{code}.parquet", index=False)
            for index, (name, column) in enumerate(stats.columns.items()):
                record["columns"][name]["has_values"] = bool(column.values)
                if column.values:
                    np.save(staging / f"values-{index}.npy", np.concatenate(column.values))
            (staging / ENTRY_FILE).write_text(json.dumps(record))
            staging.rename(self.folder)
        except (OSError, TypeError):  # written by another run first; a label JSON cannot hold
            shutil.rmtree(staging, ignore_errors=True)
            return
        _prune(self.folder.parent)


def _record(stats: TableStats) -> dict[str, Any]:
    return {
        "rows": stats.rows,
        "dropped_labels": stats.dropped_labels,
        "dropped_rows": stats.dropped_rows,
        "gaps": stats.gaps,
        "columns": {
            name: {
                "present": dataclasses.astuple(column.present),
                "missing": column.missing,
                "counts": column.counts,
            }
            for name, column in stats.columns.items()
        },
        "label_counts": _pairs(stats.label_counts),
        "pool_label_counts": _pairs(stats.pool_label_counts),
        "pool_labels": dataclasses.astuple(stats.pool_labels),
        "samples": sorted(stats.samples),
    }


def _stats(
    record: dict[str, Any], samples: dict[int, Any], values: dict[str, list[np.ndarray]]
) -> TableStats:
    return TableStats(
        rows=record["rows"],
        dropped_labels=record["dropped_labels"],
        dropped_rows=record["dropped_rows"],
        gaps=record["gaps"],
        columns={
            name: ColumnStats(
                Moments(*column["present"]),
                column["missing"],
                column["counts"],
                values.get(name, []),
            )
            for name, column in record["columns"].items()
        },
        label_counts=_counts(record["label_counts"]),
        pool_label_counts=_counts(record["pool_label_counts"]),
        pool_labels=Moments(*record["pool_labels"]),
        samples=samples,
    )


def _pairs(counts: dict | None) -> list | None:
    """Label counts as [value, count] pairs: JSON keeps a value's type (1, 1.0, "1", true)."""
    return None if counts is None else [[key, count] for key, count in counts.items()]


def _counts(pairs: list | None) -> dict | None:
    return None if pairs is None else {key: count for key, count in pairs}


def _prune(folder: Path) -> None:
    entries = sorted(
        (entry for entry in folder.iterdir() if not entry.name.startswith(".")),
        key=lambda entry: entry.stat().st_mtime,
        reverse=True,
    )
    for entry in entries[KEEP:]:
        shutil.rmtree(entry, ignore_errors=True)
