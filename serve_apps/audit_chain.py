"""The audit log's hash chains: how a line is sealed, and how a log is checked.

Replicas append to one file, so each writer (one ``AuditLog``: one replica process) keeps a chain
of its own, which needs no lock and no read of the file. Every line carries ``writer`` (a random
id), ``seq`` (0, 1, 2 ...), ``prev`` (the ``hash`` of the writer's previous line; ``GENESIS`` and
``"start": true`` on its first) and ``hash``: the SHA-256 of the line's canonical JSON without
``hash`` (keys sorted, no spaces, ASCII only). An edited line fails its hash; a deleted, repeated
or moved line breaks its writer's ``seq`` and ``prev``. The chain holds no secret: whoever can
write the file can also rewrite all of a writer's later lines, which only hashes kept elsewhere
show (a writer's last ``seq`` and ``hash``, as :func:`verify` reports them). Removing a writer's
last lines leaves a shorter chain that checks out.

:func:`verify` only reads: ``orchestrator.serving.audit_verify`` prints what it finds.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

GENESIS = "0" * 64


def canonical(fields: dict[str, Any]) -> bytes:
    """The bytes a line's hash is taken over."""
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def line_hash(fields: dict[str, Any]) -> str:
    """The SHA-256 hex digest of ``fields`` (a line without its ``hash``)."""
    return hashlib.sha256(canonical(fields)).hexdigest()


def sealed_line(fields: dict[str, Any]) -> tuple[bytes, str]:
    """``fields`` as a log line with its ``hash`` (the canonical JSON with ``hash`` added
    last, and a newline), and that hash: one serialization for both."""
    body = canonical(fields)
    digest = hashlib.sha256(body).hexdigest()
    return body[:-1] + b',"hash":"' + digest.encode() + b'"}\n', digest


def log_files(path: Path) -> list[Path]:
    """``path`` and its rotated files, oldest first: FILE.N ... FILE.1, FILE."""
    rotated = re.compile(re.escape(path.name) + r"\.([0-9]+)")
    numbered = [
        (int(match.group(1)), candidate)
        for candidate in path.parent.iterdir()
        if (match := rotated.fullmatch(candidate.name))
    ]
    return [candidate for _, candidate in sorted(numbered, reverse=True)] + [path]


@dataclass
class Chain:
    """What was seen of one writer's chain."""

    first_seq: int
    seq: int
    hash: str
    lines: int = 1
    anchor: str | None = None  # FILE:LINE where it was first seen mid-chain


@dataclass
class Break:
    """The first line that does not check out."""

    file: str
    line: int
    writer: str | None
    reason: str


@dataclass
class Verdict:
    lines: int = 0  # the lines that checked out
    chains: dict[str, Chain] = field(default_factory=dict)
    broken: Break | None = None


def verify(files: Iterable[Path]) -> Verdict:
    """Check the lines of ``files`` (oldest first), stopping at the first that breaks: not a JSON
    object with the chain's fields, a hash that does not match, or a ``seq``/``prev`` that does
    not follow the writer's line before it. A writer first seen mid-chain (its older lines
    rotated away) is taken from there, with the place noted in its ``anchor``."""
    verdict = Verdict()
    for path in files:
        with path.open("rb") as lines:
            for number, raw in enumerate(lines, 1):
                where = f"{path}:{number}"
                writer, reason = _check(raw, verdict.chains, where)
                if reason:
                    verdict.broken = Break(str(path), number, writer, reason)
                    return verdict
                verdict.lines += 1
    return verdict


def _check(raw: bytes, chains: dict[str, Chain], where: str) -> tuple[str | None, str | None]:
    """(the line's writer, why the line breaks the log or None), updating ``chains``."""
    try:
        entry = json.loads(raw)
    except ValueError:
        return None, "not a JSON line"
    if not isinstance(entry, dict):
        return None, "not a JSON object"
    writer, seq, prev, digest = (entry.get(k) for k in ("writer", "seq", "prev", "hash"))
    if not isinstance(writer, str):
        return None, "no writer"
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
        return writer, "no seq (a whole number)"
    if not isinstance(prev, str) or not isinstance(digest, str):
        return writer, "no prev or hash"
    del entry["hash"]
    if line_hash(entry) != digest:
        return writer, f"seq {seq}: the hash does not match the line (edited)"
    if (entry.get("start") is True) != (seq == 0) or (seq == 0) != (prev == GENESIS):
        return writer, f"seq {seq}: a chain's start needs seq 0, prev {GENESIS[:8]}... and start"
    chain = chains.get(writer)
    if chain is None:
        chains[writer] = Chain(seq, seq, digest, anchor=None if seq == 0 else where)
        return writer, None
    if seq <= chain.seq:
        return writer, f"seq {seq} comes after seq {chain.seq}: repeated or moved"
    if seq > chain.seq + 1:
        missing = seq - chain.seq - 1
        return writer, f"seq {seq} follows seq {chain.seq}: {missing} line(s) missing or moved"
    if prev != chain.hash:
        return writer, f"seq {seq}: prev is not the hash of seq {chain.seq}"
    chain.seq, chain.hash, chain.lines = seq, digest, chain.lines + 1
    return writer, None
