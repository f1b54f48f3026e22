"""``redblue ui``: the MLflow UI on the tracking store in force, on loopback unless a login
guards it (:mod:`orchestrator.mlflow_auth`)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import typer

from orchestrator import console, mlflow_auth
from orchestrator.environment import interrupt_on_sigterm, prepare_driver_env, state_root
from orchestrator.exit_codes import EXIT_INTERRUPTED, EXIT_INVALID


def ui(
    port: int = typer.Option(5000, help="Port of the MLflow UI."),
    host: str = typer.Option("127.0.0.1", help="Interface to bind; keep loopback unless needed."),
    auth: bool = typer.Option(
        False,
        "--auth",
        help="Require a login (MLflow's basic-auth app; user admin, password from "
        "$MLFLOW_AUTH_ADMIN_PASSWORD). Needed for any host but loopback.",
    ),
) -> None:
    """Open the MLflow UI on the local tracking store (127.0.0.1 by default)."""
    problem = mlflow_auth.ui_problem(host, auth)
    if problem:
        console.print_error(problem)
        raise typer.Exit(EXIT_INVALID)
    prepare_driver_env(None)
    login = " (login: admin)" if auth else ""
    console.err.print(f"MLflow UI on http://{host}:{port}{login}  (Ctrl-C to stop)")
    raise typer.Exit(serve_ui(host, port, auth))


def serve_ui(host: str, port: int, auth: bool = False) -> int:
    """Run the MLflow UI on the tracking store in force until Ctrl-C; returns its exit code.
    With ``auth``, MLflow's basic-auth app, its users kept in ``~/.redblue/mlflow-auth``."""
    from orchestrator.tracking import tracking_uri

    command = [
        sys.executable,
        "-m",
        "mlflow",
        "ui",
        "--backend-store-uri",
        tracking_uri(),
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    if auth:
        password = os.environ[mlflow_auth.PASSWORD_VARIABLE]
        folder = state_root() / ".redblue" / "mlflow-auth"
        env.update(mlflow_auth.server_env(folder, password))
        command += mlflow_auth.APP_ARGUMENTS
    interrupt_on_sigterm()
    signal.signal(signal.SIGHUP, signal.getsignal(signal.SIGTERM))  # its terminal closed
    # Its own process group, stopped whole: `mlflow ui` runs the server as a child of its own,
    # which a signal to this process alone (not the terminal's Ctrl-C) would leave running.
    server = subprocess.Popen(command, env=env, start_new_session=True)
    try:
        return server.wait()
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    finally:
        stop_group(server)


def stop_group(leader: subprocess.Popen, grace_s: float = 10.0) -> None:
    """SIGTERM to every process of ``leader``'s group, SIGKILL to any left after ``grace_s``."""
    deadline = time.monotonic() + grace_s
    for signum in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(leader.pid, signum)
            while time.monotonic() < deadline:
                leader.poll()  # reaped: a zombie leader would keep its group alive
                os.killpg(leader.pid, 0)  # ProcessLookupError once no process of it is left
                time.sleep(0.1)
        except ProcessLookupError:
            return
