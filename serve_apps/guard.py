"""The ASGI layer in front of the API: API-key check, body-size limit and the audit log.

It runs before FastAPI reads the body, so an unauthenticated or oversized request is refused
without parsing a byte of it. Keys are held as SHA-256 digests and compared in constant time;
the audit log records who (a key id, never the key), how much (rows, and the rows of the batched
forward pass that answered), the outcome and the latency, and never the payload.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

PROTECTED_PREFIX = "/v1/"
KEY_ID_LENGTH = 12


def key_digest(key: str) -> str:
    """The SHA-256 hex digest a replica keeps instead of the key itself."""
    return hashlib.sha256(key.encode()).hexdigest()


def key_id(key: str) -> str:
    """A short, non-secret name for a key, as written to the audit log."""
    return key_digest(key)[:KEY_ID_LENGTH]


class KeyRing:
    """Accepted keys, as digests; several allow rotation without downtime."""

    def __init__(self, digests: list[str]) -> None:
        if not digests:
            raise ValueError("no API key digest given: the endpoint would be open")
        self.digests = [d.lower() for d in digests]

    def accepts(self, token: str) -> bool:
        presented = key_digest(token)
        # Compare against every digest, without stopping early, in constant time each.
        matches = [hmac.compare_digest(presented, digest) for digest in self.digests]
        return any(matches)


class AuditLog:
    """Appends one JSON line per request to a file (O_APPEND: replicas may share it)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    def write(self, entry: dict[str, Any]) -> None:
        os.write(self._fd, (json.dumps(entry, separators=(",", ":")) + "\n").encode())


def json_response(status: int, error: str, message: str, headers: list | None = None):
    """The ASGI messages of a small JSON error response."""
    body = json.dumps({"error": error, "message": message}).encode()
    start = {
        "type": "http.response.start",
        "status": status,
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            *(headers or []),
        ],
    }
    return start, {"type": "http.response.body", "body": body}


class Guard:
    """ASGI middleware: bearer key on ``/v1/*``, ``max_body_bytes``, one audit line per request."""

    def __init__(self, app, *, keys: KeyRing, max_body_bytes: int, audit: AuditLog | None) -> None:
        self.app = app
        self.keys = keys
        self.max_body_bytes = max_body_bytes
        self.audit = audit

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        state = scope.setdefault("state", {})
        outcome = {"status": 500, "key_id": "-"}

        async def tracked_send(message) -> None:
            if message["type"] == "http.response.start":
                outcome["status"] = message["status"]
            await send(message)

        try:
            headers = dict(scope.get("headers") or [])
            refusal = self._refusal(scope["path"], headers, outcome)
            if refusal is None and b"content-length" not in headers:
                receive, refusal = await self._buffered(receive)
            if refusal:
                for message in json_response(*refusal):
                    await tracked_send(message)
                return
            await self.app(scope, receive, tracked_send)
        finally:
            if self.audit is not None:
                self.audit.write(
                    {
                        "time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
                        "method": scope.get("method"),
                        "path": scope.get("path"),
                        "key_id": outcome["key_id"],
                        "rows": state.get("rows", 0),
                        "batch_rows": state.get("batch_rows", 0),
                        "status": outcome["status"],
                        "latency_ms": round((time.perf_counter() - started) * 1000, 3),
                    }
                )

    def _refusal(self, path: str, headers: dict, outcome: dict) -> tuple | None:
        """A (status, error, message, headers) refusal, or None to let the request through."""
        if path.startswith(PROTECTED_PREFIX):
            token = _bearer_token(headers.get(b"authorization"))
            if token:
                outcome["key_id"] = key_id(token)
            if not token or not self.keys.accepts(token):
                message = (
                    "the API key is not valid"
                    if token
                    else "send the API key as 'Authorization: Bearer <key>'"
                )
                return 401, "unauthorized", message, [(b"www-authenticate", b"Bearer")]
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body_bytes):
            return self._too_large()
        return None

    def _too_large(self) -> tuple:
        return (
            413,
            "too_large",
            f"the request body exceeds the limit of {self.max_body_bytes} bytes",
            None,
        )

    async def _buffered(self, receive):
        """Read a body sent without Content-Length (chunked) up to the limit, then replay it.

        Returns (receive, None), or (receive, a 413 refusal) once the limit is passed.
        """
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return receive, None
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_body_bytes:
                return receive, self._too_large()
            more = message.get("more_body", False)
        body = b"".join(chunks)
        replayed = False

        async def replay():
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        return replay, None


def _bearer_token(header: bytes | None) -> str | None:
    if not header:
        return None
    scheme, _, token = header.decode("latin-1").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None
