"""The ASGI layer in front of the API: API-key check, body-size limit and the audit log.

It runs before FastAPI reads the body, so an unauthenticated or oversized request is refused
without parsing a byte of it. Deny by default: every route but ``/healthz`` needs a key (the API,
the OpenAPI document and ``/docs``, unknown paths), decided on the path the router sees, i.e.
after the application's root path (Ray Serve sets it to the route prefix). Keys are held as
SHA-256 digests and compared in constant time; the audit log records who (a key id, never the
key), how much (rows, and the rows of the batched forward pass that answered), the outcome and
the latency, and never the payload.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import os
import re
import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

OPEN_ROUTES = frozenset({"/healthz"})  # the only routes answered without a key
KEY_ID_LENGTH = 12
REQUEST_ID = re.compile(rb"^[A-Za-z0-9._-]{1,64}$")  # a client's own X-Request-ID, if sane


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
    """Appends one JSON line per request to a file, rotated by size.

    Replicas may share the file: lines are appended with O_APPEND, and the replica that sees
    the file past ``max_bytes`` rotates it (FILE -> FILE.1 -> ... FILE.<backups>) under an
    exclusive lock; the others notice the new file and reopen.
    """

    def __init__(self, path: Path, max_bytes: int = 50 * 1024 * 1024, backups: int = 5) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path, self.max_bytes, self.backups = path, max_bytes, backups
        self._lock = threading.Lock()
        self._fd = self._open()

    def _open(self) -> int:
        return os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    def write(self, entry: dict[str, Any]) -> None:
        line = (json.dumps(entry, separators=(",", ":")) + "\n").encode()
        with self._lock:
            self._reopen_if_rotated()
            os.write(self._fd, line)
            if os.fstat(self._fd).st_size >= self.max_bytes:
                self._rotate()

    def _reopen_if_rotated(self) -> None:
        try:
            current = os.stat(self.path).st_ino
        except FileNotFoundError:
            current = None
        if current != os.fstat(self._fd).st_ino:
            os.close(self._fd)
            self._fd = self._open()

    def _rotate(self) -> None:
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


def audit_log_at(path: str) -> Path:
    """Where a replica writes the audit log: an absolute path as given; a relative one (from a
    deploy to a cluster) under ~/.redblue on the replica's own node."""
    resolved = Path(path).expanduser()
    return resolved if resolved.is_absolute() else Path.home() / ".redblue" / resolved


def route_path(scope) -> str:
    """The path the router matches: ``path`` less ``root_path`` (as Starlette's routing does)."""
    path: str = scope["path"]
    root_path: str = scope.get("root_path", "")
    if not root_path or not path.startswith(root_path):
        return path
    if path == root_path:
        return ""
    return path[len(root_path) :] if path[len(root_path)] == "/" else path


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
    """ASGI middleware: a bearer key on every route but ``/healthz``, ``max_body_bytes``, one audit
    line per request."""

    def __init__(
        self,
        app,
        *,
        keys: KeyRing,
        max_body_bytes: int,
        audit: AuditLog | None,
        model: dict[str, Any] | None = None,
        on_answer: Callable[[int, float], None] | None = None,
    ) -> None:
        """``model`` (name, version) goes into every audit line; ``on_answer(status,
        latency_ms)`` is called for every answered request (the deployment's metrics)."""
        self.app = app
        self.keys = keys
        self.max_body_bytes = max_body_bytes
        self.audit = audit
        self.model = model or {}
        self.on_answer = on_answer

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "websocket":  # no route takes one; refused unless authenticated
            headers = dict(scope.get("headers") or [])
            if self._unauthorized(route_path(scope), headers, {}):
                await send({"type": "websocket.close", "code": 1008})
                return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        state = scope.setdefault("state", {})
        outcome: dict[str, Any] = {"status": 500, "key_id": "-"}
        headers = dict(scope.get("headers") or [])
        request_id = _request_id(headers.get(b"x-request-id"))

        async def tracked_send(message) -> None:
            if message["type"] == "http.response.start":
                outcome["status"] = message["status"]
                if b"x-request-id" not in headers:  # else Ray Serve answers with it already
                    answer_headers = [*message.get("headers", []), (b"x-request-id", request_id)]
                    message = {**message, "headers": answer_headers}
            await send(message)

        try:
            refusal = self._refusal(route_path(scope), headers, outcome)
            if refusal is None and b"content-length" not in headers:
                receive, refusal = await self._buffered(receive)
            if refusal:
                for message in json_response(*refusal):
                    await tracked_send(message)
                return
            await self.app(scope, receive, tracked_send)
        finally:
            latency_ms = round((time.perf_counter() - started) * 1000, 3)
            if self.on_answer is not None:
                self.on_answer(outcome["status"], latency_ms)
            if self.audit is not None:
                self.audit.write(
                    {
                        "time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
                        "request_id": request_id.decode(),
                        "method": scope.get("method"),
                        "path": scope.get("path"),
                        "client": _client(scope, headers),
                        **self.model,
                        "key_id": outcome["key_id"],
                        "rows": state.get("rows", 0),
                        "batch_rows": state.get("batch_rows", 0),
                        "status": outcome["status"],
                        "latency_ms": latency_ms,
                    }
                )

    def _refusal(self, route: str, headers: dict, outcome: dict) -> tuple | None:
        """A (status, error, message, headers) refusal, or None to let the request through."""
        unauthorized = self._unauthorized(route, headers, outcome)
        if unauthorized:
            return 401, "unauthorized", unauthorized, [(b"www-authenticate", b"Bearer")]
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body_bytes):
            return self._too_large()
        return None

    def _unauthorized(self, route: str, headers: dict, outcome: dict) -> str | None:
        """Why the request may not reach ``route`` (a message), or None when it may."""
        if route in OPEN_ROUTES:
            return None
        token = _bearer_token(headers.get(b"authorization"))
        if token:
            outcome["key_id"] = key_id(token)
        if not token:
            return "send the API key as 'Authorization: Bearer <key>'"
        return None if self.keys.accepts(token) else "the API key is not valid"

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


def _request_id(header: bytes | None) -> bytes:
    """The request's X-Request-ID (Ray Serve sets one, or a client may) when it is a sane
    token, else a new random one."""
    if header and REQUEST_ID.match(header):
        return header
    return uuid.uuid4().hex.encode()


def _client(scope, headers: dict) -> str:
    """The peer's address; behind a proxy (HAProxy, Serve's proxy) the first X-Forwarded-For."""
    forwarded = headers.get(b"x-forwarded-for", b"").decode("latin-1").split(",")[0].strip()
    peer = scope.get("client")
    return forwarded or (str(peer[0]) if peer else "-")


def _bearer_token(header: bytes | None) -> str | None:
    if not header:
        return None
    scheme, _, token = header.decode("latin-1").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None
