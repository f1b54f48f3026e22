"""Running ``redblue cluster up`` clusters in tests: the CLI as a subprocess, a cluster that is
always brought down, and the few lookups the cluster tests share."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REDBLUE = str(Path(sys.executable).with_name("redblue"))


def redblue(*args: str, cwd: Path, env: dict, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [REDBLUE, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


@contextmanager
def local_cluster(
    folder: Path, nodes: int, extra_env: dict | None = None
) -> Iterator[tuple[Path, dict, str]]:
    """``redblue cluster up --nodes N`` in ``folder`` (one CPU a node), brought down on exit:
    (folder, env with its exports, the dashboard's URL)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI") and not k.startswith("RAY_SERVE")
    }
    env.update(extra_env or {})
    up = redblue(
        "cluster", "up", "--nodes", str(nodes), "--cpus-per-node", "1", cwd=folder, env=env
    )
    assert up.returncode == 0, up.stderr[-3000:]
    exports = dict(re.findall(r"^export (\w+)=(\S+)$", up.stdout, re.M))
    dashboard = re.search(r"--address (http://\S+)", up.stdout)
    assert dashboard, up.stdout
    try:
        yield folder, {**env, **exports}, dashboard.group(1)
    finally:
        redblue("cluster", "down", cwd=folder, env=env)


def config_file(folder: Path, name: str, body: str) -> Path:
    """A config named ``name`` (its MLflow experiment) in ``folder``: ``body`` after the name."""
    config = folder / f"{name}.yaml"
    config.write_text(f"name: {name}\n{body}")
    return config


def the_only_run(env: dict, experiment: str):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    (run,) = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    return run


def group_of(process) -> int | None:
    try:
        return os.getpgid(process.pid)
    except (ProcessLookupError, PermissionError):
        return None
