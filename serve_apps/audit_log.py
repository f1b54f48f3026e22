"""The audit log: one JSON line per request, bounded, chained, rotated by size.

Every string a line holds is cut to ``FIELD_BYTES`` as written (JSON escapes counted), and a line
still over ``LINE_BYTES`` has its longest strings halved until it fits; a line that was cut says
``"truncated": true``. Each line carries its writer's hash chain (``serve_apps.audit_chain``).
Requests without an accepted key are counted per source and interval rather than written one
line each (``serve_apps.audit_refusals``).
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from serve_apps.audit_chain import GENESIS, sealed_line
from serve_apps.audit_refusals import SAMPLE_PATH_BYTES, RefusalTally

FIELD_BYTES = 256
LINE_BYTES = 1024  # the newline included


def clip(value: str, limit: int = FIELD_BYTES) -> str:
    """The longest start of ``value`` that takes at most ``limit`` bytes as a JSON string
    (quotes not counted)."""
    if 2 * len(value) <= limit and value.isascii() and value.isprintable():
        return value  # a printable ASCII character takes at most 2 bytes (\" and \\)
    text = value[:limit]
    size = len(json.dumps(text)) - 2
    while size > limit:  # escapes: a control character takes 6 bytes, a non-ASCII one 6 or 12
        text = text[: min(len(text) - 1, len(text) * limit // size)]
        size = len(json.dumps(text)) - 2
    return text


def audit_log_at(path: str) -> Path:
    """Where a replica writes the audit log: an absolute path as given; a relative one (from a
    deploy to a cluster) under ~/.redblue on the replica's own node."""
    resolved = Path(path).expanduser()
    return resolved if resolved.is_absolute() else Path.home() / ".redblue" / resolved


class AuditLog:
    """Appends one JSON line per request to a file, rotated by size.

    Replicas may share the file: lines are appended with O_APPEND, one ``write`` each, and the
    replica that sees the file past ``max_bytes`` rotates it (FILE -> FILE.1 -> ...
    FILE.<backups>) under an exclusive lock; the others notice the new file and reopen. Each
    instance is one writer of its own chain, kept in memory, so the chain goes on in the new file.
    """

    def __init__(
        self,
        path: Path,
        max_bytes: int = 50 * 1024 * 1024,
        backups: int = 5,
        refusal_interval_s: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path, self.max_bytes, self.backups = path, max_bytes, backups
        self.writer = secrets.token_hex(8)
        self._seq, self._prev = 0, GENESIS
        self._refusals = RefusalTally(refusal_interval_s)
        self._clock = clock
        self._lock = threading.Lock()
        self._fd: int | None = self._open()

    def _open(self) -> int:
        return os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    def write(self, entry: dict[str, Any]) -> None:
        """Append ``entry`` as one line (after the summaries of an interval that has ended)."""
        with self._lock:
            self._summarize(self._refusals.ended(self._clock()))
            self._append(entry)

    def unauthenticated(self, entry: dict[str, Any]) -> None:
        """A request without an accepted key: written in full if it is the first of its
        ``client`` and ``status`` in the interval, else counted for the interval's summary."""
        now = self._clock()
        source = clip(str(entry.get("client")))
        path = clip(str(entry.get("path")), SAMPLE_PATH_BYTES)
        with self._lock:
            self._summarize(self._refusals.ended(now))
            if self._refusals.note(source, int(entry.get("status") or 0), path, now):
                self._append(entry)

    def close(self) -> None:
        """Write the summaries of the interval so far, and close the file (a later line opens
        it again)."""
        with self._lock:
            self._summarize(self._refusals.drain(self._clock()))
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def _summarize(self, summaries: list[dict[str, Any]]) -> None:
        for summary in summaries:
            self._append(summary)

    def _sealed(self, entry: dict[str, Any]) -> tuple[bytes, str]:
        """``entry`` as the writer's next line (cut to size, chained), and its hash."""
        fields = {k: clip(v) if isinstance(v, str) else v for k, v in entry.items()}
        truncated = any(isinstance(v, str) and len(v) != len(fields[k]) for k, v in entry.items())
        while True:
            if truncated:
                fields["truncated"] = True
            chained = {**fields, "writer": self.writer, "seq": self._seq, "prev": self._prev}
            if self._seq == 0:
                chained["start"] = True
            line, digest = sealed_line(chained)
            if len(line) <= LINE_BYTES:
                return line, digest
            cuttable = [k for k, v in fields.items() if isinstance(v, str) and v]
            if not cuttable:
                raise ValueError(f"an audit line of {len(line)} bytes cannot be cut to size")
            longest = max(cuttable, key=lambda k: len(json.dumps(fields[k])))
            fields[longest] = clip(fields[longest], (len(json.dumps(fields[longest])) - 2) // 2)
            truncated = True

    def _append(self, entry: dict[str, Any]) -> None:
        line, digest = self._sealed(entry)
        self._reopen_if_rotated()
        assert self._fd is not None
        os.write(self._fd, line)
        self._seq, self._prev = self._seq + 1, digest
        if os.fstat(self._fd).st_size >= self.max_bytes:
            self._rotate()

    def _reopen_if_rotated(self) -> None:
        try:
            current = os.stat(self.path).st_ino
        except FileNotFoundError:
            current = None
        if self._fd is None or current != os.fstat(self._fd).st_ino:
            if self._fd is not None:
                os.close(self._fd)
            self._fd = self._open()

    def _rotate(self) -> None:
        assert self._fd is not None
        lock_file = self.path.with_name(self.path.name + ".lock")
        with open(lock_file, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                if os.stat(self.path).st_ino != os.fstat(self._fd).st_ino:
                    return  # another replica rotated it meanwhile
            except FileNotFoundError:
                return
            for n in range(self.backups - 1, 0, -1):
                older = self.path.with_name(f"{self.path.name}.{n}")
                if older.exists():
                    os.replace(older, self.path.with_name(f"{self.path.name}.{n + 1}"))
            os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
        self._reopen_if_rotated()
