"""``redblue cluster up|status|down``: a local multi-node Ray cluster and an MLflow server on
127.0.0.1 (the commands; the processes are :mod:`orchestrator.cluster.local`'s)."""

from __future__ import annotations

import sys

import typer

from orchestrator import console
from orchestrator.exit_codes import EXIT_FAILED, EXIT_INVALID

cluster_app = typer.Typer(
    no_args_is_help=True, help="A local multi-node Ray cluster and an MLflow server on 127.0.0.1."
)


@cluster_app.command("up")
def cluster_up(
    nodes: int = typer.Option(3, "--nodes", "-n", min=1, max=16, help="Ray nodes, head included."),
    cpus_per_node: float = typer.Option(1.0, min=0.1, help="CPUs each node offers to Ray."),
) -> None:
    """Start a Ray head, NODES-1 worker nodes and an MLflow server, all on 127.0.0.1.

    Prints the environment to use them on stdout: eval "$(redblue cluster up --nodes 3)".
    """
    from orchestrator.cluster.auth import ensure_token
    from orchestrator.cluster.local import up
    from orchestrator.cluster.state import ClusterError

    try:
        ensure_token()
        state = up(nodes, cpus_per_node, console.err.print)
    except ClusterError as exc:
        console.print_error(str(exc))
        raise typer.Exit(EXIT_INVALID if "already runs" in str(exc) else EXIT_FAILED) from None
    console.err.print(
        f"ready: {nodes} Ray nodes ({state.dashboard_url}), MLflow {state.tracking_uri}; "
        "`redblue cluster down` stops them"
    )
    sys.stdout.write(state.exports())


@cluster_app.command("status")
def cluster_status() -> None:
    """Show the local cluster's processes, Ray nodes and addresses."""
    from orchestrator.cluster.local import node_rows
    from orchestrator.cluster.state import load_state

    state = load_state()
    if state is None:
        console.print_error("no local cluster is recorded here; start one: redblue cluster up")
        raise typer.Exit(EXIT_FAILED)
    from rich.table import Table

    table = Table(title=f"local cluster: {state.ray_address}", title_justify="left")
    for column in ("what", "id", "state", "detail"):
        table.add_column(column, overflow="fold")
    for row in node_rows(state):
        table.add_row(*row)
    console.out.print(table)
    console.out.print(f"dashboard {state.dashboard_url}   MLflow {state.tracking_uri}")


@cluster_app.command("down")
def cluster_down() -> None:
    """Stop exactly the processes `redblue cluster up` started, nothing else (each verified by
    pid, start time and command before it is signalled)."""
    from orchestrator.cluster.state import load_state
    from orchestrator.cluster.stop import down

    state = load_state()
    if state is None:
        console.err.print("no local cluster is recorded here; nothing to stop")
        return
    stopped = down(state, console.err.print)
    console.err.print(f"stopped: {', '.join(stopped) or 'nothing was running'}")
