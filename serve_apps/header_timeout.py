"""A header-read timeout for uvicorn's HTTP servers: Serve's proxy and the replicas' own.

uvicorn starts no timer on a new connection: a client that sends part of a request line and
waits holds its connection (and a slot of the process's file descriptors) for ever. Here every
connection must deliver a request's line and headers within ``HEADER_TIMEOUT_S`` of opening, and
a kept-alive connection within ``HEADER_TIMEOUT_S`` of the first bytes of its next request;
otherwise it is closed. An idle kept-alive connection is left to uvicorn's keep-alive timeout, as
before: HAProxy reuses its idle connections to the replicas (``http-reuse always``), and closing
them sooner would race its reuse. Both of uvicorn's protocols (h11 and httptools) get it; a
request's body is not timed here.

Serve builds its uvicorn servers itself, with no setting for this, so Redblue installs it in
each Serve process through Serve's proxy callback (``RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH``
= :data:`CALLBACK`, set by ``redblue deploy`` before its Ray starts), which both the proxy and
every replica call before they start serving.
"""

from __future__ import annotations

from typing import Any

HEADER_TIMEOUT_S = 10.0
CALLBACK = "serve_apps.header_timeout:proxy_callback"


def proxy_callback() -> list:
    """Serve's proxy callback: bounds header reads in this process, adds no middleware."""
    bound_header_reads()
    return []


def bound_header_reads(seconds: float = HEADER_TIMEOUT_S) -> None:
    """Give uvicorn's protocols the timeout, in this process (once; later calls change nothing)."""
    from uvicorn.protocols.http.h11_impl import H11Protocol
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    for protocol in (H11Protocol, HttpToolsProtocol):
        if not getattr(protocol, "header_timeout_s", None):
            _bound(protocol, seconds)


def _bound(protocol: Any, seconds: float) -> None:
    made, received = protocol.connection_made, protocol.data_received
    lost = protocol.connection_lost

    def arm(self) -> None:
        disarm(self)
        self.header_timer = self.loop.call_later(seconds, expire, self)

    def disarm(self) -> None:
        timer = getattr(self, "header_timer", None)
        if timer is not None:
            timer.cancel()
            self.header_timer = None

    def expire(self) -> None:
        self.header_timer = None
        if not self.transport.is_closing():
            self.transport.close()

    def connection_made(self, transport, *args, **kwargs) -> None:
        made(self, transport, *args, **kwargs)
        arm(self)

    def data_received(self, data: bytes) -> None:
        before = self.cycle
        if getattr(self, "header_timer", None) is None and (
            before is None or before.response_complete
        ):  # the first bytes of a kept-alive connection's next request
            arm(self)
        received(self, data)
        if self.cycle is not before:  # a request's line and headers are in
            disarm(self)

    def connection_lost(self, exc: Exception | None) -> None:
        disarm(self)
        lost(self, exc)

    protocol.connection_made = connection_made
    protocol.data_received = data_received
    protocol.connection_lost = connection_lost
    protocol.header_timeout_s = seconds
