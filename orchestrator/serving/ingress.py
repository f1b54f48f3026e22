"""Serve's ingress on a local Ray: its settings, and the HAProxy processes it starts.

Set before a local Ray starts (each Ray process reads them once). HAProxy runs through Redblue's
wrapper (:mod:`orchestrator.serving.haproxy_rewrite`): its listeners stay on loopback unless
serve.host says otherwise, slow clients are bounded, and each HAProxy dies with the Ray actor
that starts it (:mod:`orchestrator.serving.haproxy_launcher`); what a killed deploy left behind
is reaped by the next one.
"""

from __future__ import annotations

import os
from pathlib import Path

from orchestrator.environment import free_ports
from serve_apps.header_timeout import CALLBACK as HEADER_TIMEOUT_CALLBACK


def prepare_serve_env(
    ingress: str,
    *,
    port: int | None = None,
    host: str = "127.0.0.1",
    tls: tuple[str, str] | None = None,
) -> Path | None:
    """Before a local Ray starts: Serve's request path (read once by each Ray process).

    Replicas run their handlers on the replica's own event loop (one thread hop fewer), and
    report their load every second (autoscaling reacts in seconds, not tens of them). For the
    HAProxy ingress: its config, socket and ports are this process's own (two local deployments
    would otherwise share /tmp/haproxy-serve and ports 8404/8500/9101), its per-request metrics
    log is off (the audit log records each request), it uses at most half the cores, and a
    stopping replica drains for 3 s instead of 30.
    Returns the HAProxy folder, whose processes :func:`stop_haproxy` stops at the end. HAProxy
    dies with the Ray actor that starts it (see :mod:`orchestrator.serving.haproxy_launcher`), and
    the folder records this process (pid and start time) so that a later deploy reaps what one
    that was killed left behind (:func:`reap_stale_haproxy`).
    With ``port`` (serve.port), HAProxy's frontend is moved from 127.0.0.1, where Serve is told
    to listen (so that the replicas' own HTTP servers and Serve's fallback proxy stay on
    loopback), to ``host``; with ``tls`` (certificate and key files, checked already) it
    terminates TLS there: Ray 2.60 has no setting for a certificate, so the wrapper adds
    ``ssl crt`` to that bind line of the config Ray writes (:func:`loopback_haproxy`).
    """
    os.environ.setdefault("RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD", "0")
    # The proxy's and the replicas' uvicorn servers time a request's headers (10 s).
    os.environ.setdefault("RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH", HEADER_TIMEOUT_CALLBACK)
    # Load reaches the autoscaler every second instead of every 10 s.
    os.environ.setdefault("RAY_SERVE_REPLICA_AUTOSCALING_METRIC_PUSH_INTERVAL_S", "1")
    os.environ.setdefault("RAY_SERVE_HANDLE_AUTOSCALING_METRIC_PUSH_INTERVAL_S", "1")
    os.environ["RAY_SERVE_ENABLE_HA_PROXY"] = "1" if ingress == "haproxy" else "0"
    if ingress != "haproxy":
        return None
    import tempfile

    reap_stale_haproxy()
    folder = Path(tempfile.mkdtemp(prefix=HAPROXY_FOLDER_PREFIX))
    record_owner(folder)
    stats, metrics, fallback = free_ports(3)
    settings = {
        "RAY_SERVE_HAPROXY_METRICS_ENABLED": "0",
        # Serve holds a stopping replica for 30 s so that an external load balancer can drop it;
        # here the only balancer is this HAProxy, which the controller updates at once.
        "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "3",
        "RAY_SERVE_HAPROXY_NBTHREAD": str(max(1, min(4, (os.cpu_count() or 2) // 2))),
        "RAY_SERVE_HAPROXY_CONFIG_FILE_LOC": str(folder / "haproxy.cfg"),
        "RAY_SERVE_HAPROXY_SOCKET_PATH": str(folder / "admin.sock"),
        "RAY_SERVE_HAPROXY_SERVER_STATE_BASE": str(folder),
        "RAY_SERVE_HAPROXY_SERVER_STATE_FILE": str(folder / "server-state"),
        "RAY_SERVE_HAPROXY_METRICS_SOCKET_PATH": str(folder / "metrics.sock"),
        "RAY_SERVE_HAPROXY_STATS_PORT": str(stats),
        "RAY_SERVE_HAPROXY_METRICS_PORT": str(metrics),
        "RAY_SERVE_FALLBACK_PROXY_HTTP_PORT": str(fallback),
    }
    for key, value in settings.items():
        os.environ.setdefault(key, value)
    frontend = None
    if port is not None:
        frontend = f"{'*' if host in ('0.0.0.0', '::') else host}:{port}"  # as Ray would write it
        if tls:
            from orchestrator.serving.tls import write_haproxy_pem

            frontend += f" ssl crt {write_haproxy_pem(*tls, folder / 'tls.pem')}"
    loopback_haproxy(frontend)
    return folder


def loopback_haproxy(frontend: str | None = None) -> Path:
    """Point Ray at Redblue's HAProxy wrapper (``haproxy_wrapper.sh``); returns its path.

    Ray 2.60 writes ``bind *:STATS`` and ``bind :METRICS`` into the HAProxy config it generates
    (all interfaces, with no setting to change it), an admin socket of mode 666 and no bound on
    slow clients. The wrapper (:mod:`orchestrator.serving.haproxy_rewrite`, the same one the
    cluster image runs) rewrites the config it is given: stats and metrics on 127.0.0.1, the
    socket mode 600 in a 0700 folder, slow-client timeouts and a per-source connection limit,
    and with ``frontend`` (``HOST:PORT``, with ``ssl crt PEM`` for TLS) the frontend's bind
    line. It then runs the real binary in quiet mode (its start-up notices and stop warnings
    would flood the driver's console), through :mod:`orchestrator.serving.haproxy_launcher`,
    so that HAProxy dies with the process that started it. Set here for the local Ray's
    processes: the wrapper's Python (this one), the real binary (an HAProxy already named by
    ``RAY_SERVE_HAPROXY_BINARY_PATH``, else the wrapper finds Ray's bundled one) and the
    frontend.
    """
    import sys

    from orchestrator.serving.haproxy_rewrite import WRAPPER, Limits

    named = os.environ.get("RAY_SERVE_HAPROXY_BINARY_PATH")
    if named and Path(named) != WRAPPER:
        os.environ.setdefault("REDBLUE_HAPROXY_BINARY", named)
    os.environ["RAY_SERVE_HAPROXY_BINARY_PATH"] = str(WRAPPER)
    os.environ["REDBLUE_HAPROXY_PYTHON"] = sys.executable
    if frontend is None:
        os.environ.pop(Limits.FRONTEND_BIND, None)
    else:
        os.environ[Limits.FRONTEND_BIND] = frontend
    return WRAPPER


def stop_haproxy(folder: Path | None) -> None:
    """Stop HAProxy processes started for ``folder`` (Ray 2.60 may leave them behind), then
    remove the folder."""
    if folder is None:
        return
    import shutil

    for process in _haproxies():
        if str(folder) in " ".join(process.info["cmdline"] or []):
            _kill(process)
    shutil.rmtree(folder, ignore_errors=True)


HAPROXY_FOLDER_PREFIX = "redblue-haproxy-"
OWNER_FILE = "owner.json"


def record_owner(folder: Path) -> None:
    """Write which process (pid and start time) the HAProxy folder belongs to."""
    import json

    import psutil

    me = {"pid": os.getpid(), "started": psutil.Process().create_time()}
    (folder / OWNER_FILE).write_text(json.dumps(me))


def process_is(pid: int, started: float) -> bool:
    """Whether ``pid`` is still the process that started at ``started`` (psutil's create time),
    not a reused pid, and not a zombie."""
    import psutil

    try:
        process = psutil.Process(pid)
        return abs(process.create_time() - started) < 0.5 and process.status() != "zombie"
    except psutil.Error:
        return False


def _owner_alive(folder: Path) -> bool | None:
    """Whether the deploy that made ``folder`` still runs; None when the folder records none."""
    import json

    try:
        owner = json.loads((folder / OWNER_FILE).read_text())
        return process_is(int(owner["pid"]), float(owner["started"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def reap_stale_haproxy() -> list[int]:
    """Kill the HAProxy processes and remove the folders of local deploys that died without
    cleaning up (their recorded owner is gone); returns the pids killed. Folders that record no
    owner, and those of running deploys, are left alone."""
    import shutil
    import tempfile

    killed = []
    for process in _haproxies():
        folder = _haproxy_folder(process)
        if folder is not None and _owner_alive(folder) is False and _kill(process):
            killed.append(process.pid)
    for folder in Path(tempfile.gettempdir()).glob(HAPROXY_FOLDER_PREFIX + "*"):
        if _owner_alive(folder) is False:
            shutil.rmtree(folder, ignore_errors=True)
    return killed


def _haproxies() -> list:
    import psutil

    return [p for p in psutil.process_iter(["name", "cmdline"]) if p.info["name"] == "haproxy"]


def _haproxy_folder(process) -> Path | None:
    """The redblue folder of the config HAProxy runs: Ray 2.60 runs ``-f FOLDER/<id>/haproxy.cfg``
    for the ``FOLDER/haproxy.cfg`` it is given. None for any other HAProxy."""
    arguments = process.info["cmdline"] or []
    for flag, value in zip(arguments, arguments[1:], strict=False):
        if flag == "-f":
            return next(
                (p for p in Path(value).parents if p.name.startswith(HAPROXY_FOLDER_PREFIX)), None
            )
    return None


def _kill(process) -> bool:
    """SIGKILL ``process`` (psutil checks it is still the same process); False if it is gone."""
    import psutil

    try:
        process.kill()
        return True
    except psutil.Error:  # gone, its pid reused, or not ours to signal
        return False
