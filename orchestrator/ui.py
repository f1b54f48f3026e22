"""``redblue ui``: the MLflow UI on the tracking store in force, on loopback unless a login
guards it (:mod:`orchestrator.mlflow_auth`)."""

from __future__ import annotations

import typer

from orchestrator import console
from orchestrator.exit_codes import EXIT_INVALID


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
    from orchestrator.environment import prepare_driver_env
    from orchestrator.mlflow_auth import ui_problem

    problem = ui_problem(host, auth)
    if problem:
        console.print_error(problem)
        raise typer.Exit(EXIT_INVALID)
    prepare_driver_env(None)
    from orchestrator.tracking import serve_ui

    login = " (login: admin)" if auth else ""
    console.err.print(f"MLflow UI on http://{host}:{port}{login}  (Ctrl-C to stop)")
    raise typer.Exit(serve_ui(host, port, auth))
