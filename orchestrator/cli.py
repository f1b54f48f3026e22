"""The ``redblue`` command. Thin: parse, validate (exit 2 before Ray starts), delegate."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import typer

from orchestrator import console

EXIT_INVALID = 2

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Distributed red-blue training on Ray Train + DeepSpeed, tracked in MLflow.",
)


@app.command()
def train(
    config: Path = typer.Argument(..., help="YAML run config, e.g. configs/digits.yaml."),
    overrides: list[str] = typer.Option(
        [], "--set", "-s", help="Override a config key: --set optim.lr=0.01 (repeatable)."
    ),
    address: str | None = typer.Option(
        None, help="Ray cluster address; default: $RAY_ADDRESS, else a local Ray on 127.0.0.1."
    ),
) -> None:
    """Train CONFIG with DeepSpeed workers on Ray Train; record the run in MLflow."""
    from orchestrator.environment import prepare_driver_env, state_root

    prepare_driver_env(address)
    from orchestrator.config import ConfigError, load_config
    from orchestrator.plan import plan_run
    from trainers.data import DataError

    try:
        cfg = load_config(config, overrides)
        plan = plan_run(cfg)
    except (ConfigError, DataError) as exc:
        console.print_error(str(exc))
        raise typer.Exit(EXIT_INVALID) from None
    cfg.run.storage_path = str((state_root() / cfg.run.storage_path).resolve())

    from orchestrator.train_run import train as run_train

    code, _ = run_train(cfg, plan, address)
    raise typer.Exit(code)


@app.command()
def ui(
    port: int = typer.Option(5000, help="Port of the MLflow UI."),
    host: str = typer.Option("127.0.0.1", help="Interface to bind; keep loopback unless needed."),
) -> None:
    """Open the MLflow UI on the local tracking store (127.0.0.1 by default)."""
    from orchestrator.environment import prepare_driver_env

    prepare_driver_env(None)
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
    console.err.print(f"MLflow UI on http://{host}:{port}  (Ctrl-C to stop)")
    raise typer.Exit(
        subprocess.call(command, env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})
    )


def main() -> None:
    app()


if __name__ == "__main__":
    main()
