"""uvicorn with Redblue's header-read timeout (``serve_apps.header_timeout``): a real server in a
child process, for each of uvicorn's protocols; a connection that sends part of a request and
waits is closed, a whole request is answered, and the next request on a kept-alive connection is
timed too. Without the timeout the same slow connection stays open."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import pytest

SERVER = """
import sys, uvicorn
from serve_apps.header_timeout import bound_header_reads

async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})

if sys.argv[2] == "bounded":
    bound_header_reads(1.0)
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[3]), http=sys.argv[1], log_level="error",
            timeout_keep_alive=30)
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(params=["h11", "httptools"])
def server(request):
    def start(mode: str) -> int:
        port = free_port()
        child = subprocess.Popen([sys.executable, "-c", SERVER, request.param, mode, str(port)])
        started.append(child)
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return port
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("the server did not start")

    started: list[subprocess.Popen] = []
    yield start
    for child in started:
        child.kill()
        child.wait()


def closed_within(connection: socket.socket, seconds: float) -> bool:
    """Whether the server closes ``connection`` (reads EOF) within ``seconds``."""
    connection.settimeout(seconds)
    try:
        while connection.recv(4096):
            pass
        return True
    except TimeoutError:
        return False


def test_a_slow_request_is_closed_and_a_whole_one_answered(server):
    port = server("bounded")
    slow = socket.create_connection(("127.0.0.1", port))
    slow.sendall(b"POST /v1/pred")
    whole = socket.create_connection(("127.0.0.1", port))
    whole.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert whole.recv(4096).startswith(b"HTTP/1.1 200")
    whole.sendall(b"GET / HTTP/1.1\r\nHo")  # kept alive; the next request's headers are slow
    assert closed_within(slow, 3.0)
    assert closed_within(whole, 3.0)


def test_without_the_timeout_a_slow_request_stays_open(server):
    slow = socket.create_connection(("127.0.0.1", server("unbounded")))
    slow.sendall(b"POST /v1/pred")
    assert not closed_within(slow, 3.0)
