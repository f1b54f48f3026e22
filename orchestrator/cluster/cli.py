"""``redblue cluster up|status|down``: a local multi-node Ray cluster and an MLflow server on
127.0.0.1 (the commands; the processes are :mod:`orchestrator.cluster.local`'s); and ``redblue
submit``, a command run on a cluster as a Ray job (:mod:`orchestrator.cluster.submit`)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

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
    pass_env: list[str] = typer.Option(
        [],
        "--pass-env",
        help="Also give the cluster this variable of your shell (a name or a pattern such as "
        "'AWS_*', e.g. a bucket's credentials); repeatable. API-key variables never pass.",
    ),
) -> None:
    """Start a Ray head, NODES-1 worker nodes and an MLflow server, all on 127.0.0.1.

    The cluster's processes get an allow-list of this shell's variables (docs/cluster.md), never
    its API keys or other secrets unless named with --pass-env.
    Prints the environment to use them on stdout: eval "$(redblue cluster up --nodes 3)".
    """
    from orchestrator.cluster.auth import ensure_token
    from orchestrator.cluster.local import NEVER_PASSED, up
    from orchestrator.cluster.state import ClusterError

    refused = [name for name in pass_env if name in NEVER_PASSED]
    if refused:
        console.print_error(
            f"--pass-env {refused[0]}: API keys stay on this machine (redblue deploy gives "
            "replicas digests of them)"
        )
        raise typer.Exit(EXIT_INVALID)
    try:
        ensure_token()
        state = up(nodes, cpus_per_node, console.err.print, pass_env)
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


def submit(
    command: list[str] = typer.Argument(
        ..., help="After --: train|sweep|compare CONFIG [--set k=v]... (CONFIG inside this folder)."
    ),
    address: str | None = typer.Option(
        None, help="Ray cluster (dashboard URL or GCS address); default: $RAY_ADDRESS."
    ),
    follow: bool = typer.Option(True, "--follow/--no-follow", help="Stream the job's logs."),
    allow_file: list[str] = typer.Option(
        [], "--allow-file", help="Upload this file although it looks like a secret; repeatable."
    ),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="List the files the job would upload, then stop."
    ),
) -> None:
    """Submit `redblue train|sweep|compare CONFIG ...` to a cluster as a Ray job (this folder
    uploaded, less files named like secrets: `.env*`, `*.key`, `*.pem`, `api-key*`, `*secret*`).

    Exits with the job's outcome: 0 succeeded, 1 failed, 130 stopped.
    """
    from orchestrator.environment import prepare_driver_env

    prepare_driver_env(address)
    from orchestrator.cluster.submit import SubmitError, package, preview, submission_problem

    target = address or os.environ.get("RAY_ADDRESS")
    problem = submission_problem(target, command, console.print_warning)
    try:
        found = None if problem else package(Path.cwd(), allow_file)
    except SubmitError as exc:
        problem = str(exc)
    if problem or found is None:
        console.print_error(problem or "nothing to upload")
        raise typer.Exit(EXIT_INVALID)
    preview(found, console.err.print)
    if dry_run:
        for name, size in sorted(found.files):
            console.out.print(f"{size:>12,}  {name}", markup=False, highlight=False)
        raise typer.Exit(0)
    from orchestrator.cluster.submit import submit as submit_job
    from orchestrator.environment import interrupt_on_sigterm

    interrupt_on_sigterm()  # Ctrl-C or SIGTERM stops the job

    try:
        code = submit_job(str(target), command, found, follow, console.err.print)
    except SubmitError as exc:
        console.print_error(str(exc))
        raise typer.Exit(EXIT_INVALID) from None
    raise typer.Exit(code)
