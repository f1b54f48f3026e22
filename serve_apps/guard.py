"""The ASGI layer in front of the API: API-key check, body-size limit and the audit log.

It runs before FastAPI reads the body, so an unauthenticated or oversized request is refused
without parsing a byte of it. Deny by default: every route but ``/healthz`` needs a key (the API,
the OpenAPI document and ``/docs``, unknown paths), decided on the path the router sees, i.e.
after the application's root path (Ray Serve sets it to the route prefix). Keys are held as
SHA-256 digests and compared in constant time; the audit log records who (a key id, never the
key; the peer, and the client a trusted proxy names), how much (rows, and the rows of the batched
forward pass that answered), the outcome and the latency, and never the payload. Requests without
an accepted key are counted per source rather than written one line each
(``serve_apps.audit_refusals``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from serve_apps.audit_log import AuditLog
from serve_apps.audit_refusals import timestamp
from serve_apps.proxies import LOOPBACK, Proxies

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
    line per request with an accepted key (the others counted per source and interval)."""

    def __init__(
        self,
        app,
        *,
        keys: KeyRing,
        max_body_bytes: int,
        audit: AuditLog | None,
        model: dict[str, Any] | None = None,
        on_answer: Callable[[int, float], None] | None = None,
        trusted_proxies: Sequence[str] = LOOPBACK,
    ) -> None:
        """``model`` (name, version) goes into every audit line; ``on_answer(status,
        latency_ms)`` is called for every answered request (the deployment's metrics);
        ``X-Forwarded-For`` is read from ``trusted_proxies`` only (``serve_apps.proxies``)."""
        self.app = app
        self.keys = keys
        self.max_body_bytes = max_body_bytes
        self.audit = audit
        self.model = model or {}
        self.on_answer = on_answer
        self.proxies = Proxies(trusted_proxies)

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
        outcome: dict[str, Any] = {"status": 500, "key_id": "-", "authenticated": False}
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
            state["authenticated"] = outcome["authenticated"]
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
                self._audit(scope, state, outcome, request_id, latency_ms)

    def _audit(
        self, scope, state: dict, outcome: dict, request_id: bytes, latency_ms: float
    ) -> None:
        """Write the request's audit line (the audit log cuts every field to size), or count it
        when no accepted key came with it."""
        assert self.audit is not None
        peer = str(scope["client"][0]) if scope.get("client") else "-"
        forwarded = [v for k, v in scope.get("headers") or () if k == b"x-forwarded-for"]
        entry = {
            "time": timestamp(time.time()),
            "request_id": request_id.decode(),
            "method": scope.get("method"),
            "path": scope.get("path"),
            "peer": peer,
            "client": self.proxies.client(peer, forwarded),
            **self.model,
            **({"version": state["version"]} if "version" in state else {}),  # a canary's
            "key_id": outcome["key_id"],
            "rows": state.get("rows", 0),
            "batch_rows": state.get("batch_rows", 0),
            "status": outcome["status"],
            "latency_ms": latency_ms,
        }
        if outcome["authenticated"]:
            self.audit.write(entry)
        else:
            self.audit.unauthenticated(entry)

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
        """Why the request may not reach ``route`` (a message), or None when it may. An open
        route is reached without a key; with an accepted one it says more (``/healthz``)."""
        token = _bearer_token(headers.get(b"authorization"))
        if token:
            outcome["key_id"] = key_id(token)
            outcome["authenticated"] = self.keys.accepts(token)
        if route in OPEN_ROUTES or outcome.get("authenticated"):
            return None
        if not token:
            return "send the API key as 'Authorization: Bearer <key>'"
        return "the API key is not valid"

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


def _bearer_token(header: bytes | None) -> str | None:
    if not header:
        return None
    scheme, _, token = header.decode("latin-1").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None
