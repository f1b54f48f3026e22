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


# A careless shell's secrets: `cluster up` must keep them from every process it starts.
PLANTED_SECRETS = {"REDBLUE_API_KEY": "planted-" + "k" * 32, "SOME_SERVICE_TOKEN": "planted-t"}


@contextmanager
def local_cluster(
    folder: Path, nodes: int, extra_env: dict | None = None
) -> Iterator[tuple[Path, dict, str]]:
    """``redblue cluster up --nodes N`` in ``folder`` (one CPU a node), brought down on exit:
    (folder, env with its exports, the dashboard's URL). ``extra_env`` is passed to the cluster
    with ``--pass-env``; the shell also holds ``PLANTED_SECRETS``, which must not reach it."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI") and not k.startswith("RAY_SERVE")
    }
    env.update({**PLANTED_SECRETS, **(extra_env or {})})
    passed = [arg for name in extra_env or {} for arg in ("--pass-env", name)]
    up = redblue(
        "cluster", "up", "--nodes", str(nodes), "--cpus-per-node", "1", *passed, cwd=folder, env=env
    )
    assert up.returncode == 0, up.stderr[-3000:]
    exports = evaluated(up.stdout, re.findall(r"^export (\w+)=", up.stdout, re.M))
    dashboard = re.search(r"--address (http://\S+)", up.stdout)
    assert dashboard, up.stdout
    login = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")
    before = {name: os.environ.get(name) for name in login}
    os.environ.update({name: exports[name] for name in login})  # this process's MlflowClient
    try:
        yield folder, {**env, **exports}, dashboard.group(1)
    finally:
        redblue("cluster", "down", cwd=folder, env=env)
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def evaluated(exports: str, names: list[str]) -> dict[str, str]:
    """The variables ``eval "$(redblue cluster up)"`` sets, as a shell sets them."""
    shown = "; ".join(f'printf "%s\\0" "${name}"' for name in names)
    result = subprocess.run(
        ["bash", "-c", f'eval "$1"; {shown}', "bash", exports],
        capture_output=True,
        text=True,
        check=True,
    )
    return dict(zip(names, result.stdout.split("\0"), strict=False))


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
