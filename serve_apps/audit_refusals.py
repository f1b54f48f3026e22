"""Requests without an accepted key, counted instead of written one line each.

Anyone can send them, as fast as the network allows, so one line each would let a flood push the
lines of real requests out of the rotated files. Per source (the client address) and interval
(``serve.audit_refusal_interval_s``, aligned to the clock), the first such request is written in
full and the rest are counted; when the interval ends one summary line per source and status
says how many more came, when, and a few of their paths. At most ``MAX_SOURCES`` sources are
tracked per interval; requests from any other source are counted under ``"other"``, none written
in full.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

MAX_SOURCES = 1000
OTHER = "other"
SAMPLE_PATHS = 3
SAMPLE_PATH_BYTES = 64


def timestamp(seconds: float) -> str:
    """An audit line's time: ISO 8601, UTC, milliseconds."""
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat(timespec="milliseconds")


@dataclass
class _Count:
    count: int = 0  # the requests not written in full
    first: float = 0.0
    last: float = 0.0
    paths: list[str] = field(default_factory=list)


class RefusalTally:
    """The unauthenticated requests of the current interval, per (source, status)."""

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self._interval: float | None = None
        self._counts: dict[tuple[str, int], _Count] = {}

    def note(self, source: str, status: int, path: str, now: float) -> bool:
        """Count one request (``path`` already cut to ``SAMPLE_PATH_BYTES``); True when it is the
        first of its source and status in this interval, to be written in full."""
        self._interval = now // self.interval_s
        key = (source, status)
        counted = self._counts.get(key)
        if counted is None:
            if len(self._counts) < MAX_SOURCES:
                self._counts[key] = _Count()
                return True
            key = (OTHER, status)
            counted = self._counts.setdefault(key, _Count())
        if not counted.count:
            counted.first = now
        counted.count += 1
        counted.last = now
        if len(counted.paths) < SAMPLE_PATHS and path not in counted.paths:
            counted.paths.append(path)
        return False

    def ended(self, now: float) -> list[dict[str, Any]]:
        """The summaries of the interval that ``now`` is past (none while it lasts), and a new
        interval begun."""
        if self._interval is None or now // self.interval_s == self._interval:
            return []
        return self.drain(now)

    def drain(self, now: float) -> list[dict[str, Any]]:
        """The summaries so far, the counts cleared (at the end of an interval, and at close);
        each is dated at the interval's end, or ``now`` if sooner."""
        if self._interval is None:
            return []
        written = timestamp(min((self._interval + 1) * self.interval_s, now))
        summaries = [
            {
                "time": written,
                "event": "unauthenticated",
                "client": source,
                "status": status,
                "count": counted.count,
                "first": timestamp(counted.first),
                "last": timestamp(counted.last),
                "paths_sample": counted.paths,
            }
            for (source, status), counted in self._counts.items()
            if counted.count
        ]
        self._interval, self._counts = None, {}
        return summaries
