"""``redblue cluster up|status``: a multi-node Ray cluster and an MLflow server on loopback.

Every node is a ``ray start --block`` process of its own (the head, then N-1 workers joining it),
each with its own ports, CPUs and a ``node:<i>`` resource, on the loopback address 127.0.0.2,
token auth on, the dashboard and job API on 127.0.0.1. The tracking server is ``mlflow server``
on SQLite with served artifacts, on 127.0.0.1, behind MLflow's basic-auth app (user ``admin``, a
new password in a mode-600 file each time); it starts first, and every node's environment holds
its ``MLFLOW_TRACKING_URI`` and login (as the launch files set them), so a plain ``ray job
submit`` logs there. Nodes get an allow-list of this shell's variables (:func:`cluster_env`).
What ``up`` started is recorded (:mod:`orchestrator.cluster.state`) for ``status`` and for
``down`` (:mod:`orchestrator.cluster.stop`), which stops exactly those processes. The Ray token
file it creates is readable by its owner only (:mod:`orchestrator.cluster.auth`).
"""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from orchestrator import mlflow_auth
from orchestrator.cluster.auth import auth_headers
from orchestrator.cluster.state import (
    HOST,
    NODE_IP,
    ClusterError,
    ClusterState,
    Process,
    load_state,
    running,
    save_state,
)
from orchestrator.cluster.stop import down
from orchestrator.environment import RAY_SYSTEM_CONFIG, free_ports, state_root
from serve_apps.header_timeout import CALLBACK as HEADER_TIMEOUT_CALLBACK

NODE_PORTS = 4  # per node: the dashboard agent's two, the runtime env agent's, metrics export


def up(nodes: int, cpus_per_node: float, log, passed: Sequence[str] = ()) -> ClusterState:
    """Start the tracking server, the head and ``nodes - 1`` workers; wait until all are ready."""
    existing = load_state()
    if existing and any(running(p) for p in existing.processes):
        raise ClusterError(
            f"a local cluster already runs (RAY_ADDRESS={existing.ray_address}); "
            "stop it first with: redblue cluster down"
        )
    folder = state_root() / ".redblue" / "cluster"
    folder.mkdir(parents=True, exist_ok=True)
    # Every port of every process, chosen at once so that no two are the same (Ray refuses a
    # node whose components would share one).
    ports = iter(free_ports(3 + NODE_PORTS * nodes + 1))
    state = ClusterState(
        gcs_port=next(ports),
        dashboard_port=next(ports),
        mlflow_port=next(ports),
        nodes=nodes,
        cpus_per_node=cpus_per_node,
        folder=str(folder),
    )
    env = cluster_env(passed)
    # The tracking server requires a login: a new admin password each time, in a file only its
    # owner reads (the exports read it from there).
    password = mlflow_auth.new_password()
    mlflow_auth.write_secret(state.password_file, password)
    shutil.rmtree(folder / "mlflow-auth", ignore_errors=True)  # the last cluster's users
    server_env = {**env, **mlflow_auth.server_env(folder / "mlflow-auth", password)}
    # Every node carries the tracking URI and login, as the launch files set them: a job's
    # driver (run with the head's environment) logs to this server. So the server starts first.
    node_env = {
        **env,
        "MLFLOW_TRACKING_URI": state.tracking_uri,
        "MLFLOW_TRACKING_USERNAME": mlflow_auth.ADMIN,
        "MLFLOW_TRACKING_PASSWORD": password,
    }
    try:
        log(f"starting the MLflow server on {state.tracking_uri} (login required) ...")
        state.processes.append(_start_mlflow(state, folder, server_env))
        save_state(state)
        _wait_for_mlflow(state)
        # One at a time: on a small machine, raylets starting together time out.
        log(f"starting the head node ({cpus_per_node:g} CPUs) on {state.ray_address} ...")
        node_ports = [[next(ports) for _ in range(NODE_PORTS)] for _ in range(nodes)]
        client_port = next(ports)
        state.processes.append(_start_node(state, 0, folder, node_env, node_ports[0], client_port))
        save_state(state)
        _wait_for_nodes(state, 1)
        for index in range(1, nodes):
            log(f"starting worker node {index} ...")
            state.processes.append(_start_node(state, index, folder, node_env, node_ports[index]))
            save_state(state)
            _wait_for_nodes(state, index + 1)
    except Exception:
        save_state(state)
        down(state, log)
        raise
    save_state(state)
    return state


# What the cluster's processes (nodes, jobs, replicas deployed there) get from the shell that
# runs `up`: an allow-list. Names that look like a secret are left out even when a prefix allows
# them (the cluster's own Ray token excepted); storage credentials pass only when named.
PASSED_NAMES = frozenset(
    {"PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TZ", "TMPDIR", "TERM"}
    | {"VIRTUAL_ENV", "PYTHONPATH", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"}
)
PASSED_PREFIXES = ("LC_", "XDG_", "RAY_", "REDBLUE_", "MLFLOW_", "OMP_", "MKL_", "CUDA_", "NCCL_")
SECRET_WORDS = ("KEY", "SECRET", "TOKEN", "PASSWORD", "CREDENTIAL", "AUTH")
NEVER_PASSED = ("REDBLUE_API_KEY", "REDBLUE_API_KEY_FILE")


def cluster_env(passed: Sequence[str] = ()) -> dict[str, str]:
    """The environment of every process of the cluster: the allow-listed variables of this one
    (``PASSED_NAMES``, ``PASSED_PREFIXES`` less names that look like a secret), the variables
    named in ``passed`` (names or shell patterns, e.g. ``AWS_*`` for a bucket's credentials),
    token auth on, telemetry off. API-key variables never pass."""
    env = {name: value for name, value in os.environ.items() if _passes(name, passed)}
    env.update(
        {
            "RAY_AUTH_MODE": "token",
            "RAY_USAGE_STATS_ENABLED": "0",
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
            # A stopped job's driver gets SIGTERM, then SIGKILL after this: time to record its end.
            "RAY_JOB_STOP_WAIT_TIME_S": "15",
            # Serve's uvicorn servers close a connection whose headers are slow to come.
            "RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH": HEADER_TIMEOUT_CALLBACK,
        }
    )
    env.pop("RAY_ADDRESS", None)
    env.pop("MLFLOW_TRACKING_URI", None)  # the nodes get this cluster's; see up()
    # Jobs run `redblue ...` through a shell: this environment's commands come first.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    # Set for in-process local Rays (loopback, single node); `ray start` would then refuse to
    # add nodes. Every node here gets --node-ip-address=127.0.0.1 instead.
    env.pop("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", None)
    return env


def _passes(name: str, passed: Sequence[str]) -> bool:
    if name in NEVER_PASSED:
        return False
    if any(fnmatch.fnmatchcase(name, pattern) for pattern in passed) or name in PASSED_NAMES:
        return True
    secret = any(word in name for word in SECRET_WORDS)
    return name.startswith(PASSED_PREFIXES) and not secret


def _spawn(role: str, command: list[str], folder: Path, env: dict[str, str]) -> Process:
    log_path = folder / f"{role}.log"
    with log_path.open("w") as log_file:
        child = subprocess.Popen(
            command,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # Ctrl-C in the calling shell does not reach the cluster
        )
    return Process(role, child.pid, command, str(log_path), _create_time(child.pid))


def _create_time(pid: int) -> float:
    import psutil

    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:  # it exited at once; _check_alive reports it
        return 0.0


def _start_node(
    state: ClusterState,
    index: int,
    folder: Path,
    env: dict[str, str],
    ports: list[int],
    client_port: int | None = None,
) -> Process:
    """Node ``index`` (0: the head, with ``client_port`` for Ray Client); ``ports``: its
    ``NODE_PORTS`` agent and metrics ports."""
    ray = str(Path(sys.executable).with_name("ray"))
    listen, grpc, runtime_env, metrics = ports
    command = [
        ray,
        "start",
        "--block",
        f"--node-ip-address={NODE_IP}",
        f"--num-cpus={state.cpus_per_node:g}",
        f'--resources={{"node:{index}": 1}}',
        "--disable-usage-stats",
        f"--dashboard-agent-listen-port={listen}",
        f"--dashboard-agent-grpc-port={grpc}",
        f"--runtime-env-agent-port={runtime_env}",
        f"--metrics-export-port={metrics}",
    ]
    if index == 0:
        command += [
            "--head",
            f"--system-config={json.dumps(RAY_SYSTEM_CONFIG)}",
            f"--port={state.gcs_port}",
            f"--dashboard-host={HOST}",
            f"--dashboard-port={state.dashboard_port}",
            f"--ray-client-server-port={client_port}",
        ]
    else:
        command += [f"--address={state.ray_address}"]
    return _spawn("head" if index == 0 else f"worker-{index}", command, folder, env)


def _start_mlflow(state: ClusterState, folder: Path, env: dict[str, str]) -> Process:
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--host",
        HOST,
        "--port",
        str(state.mlflow_port),
        "--workers",
        "1",
        "--backend-store-uri",
        f"sqlite:///{folder / 'mlflow.db'}",
        "--artifacts-destination",
        str(folder / "mlartifacts"),
        *mlflow_auth.APP_ARGUMENTS,
    ]
    return _spawn("mlflow", command, folder, env)


def _wait_for_nodes(state: ClusterState, count: int, timeout_s: float = 120) -> None:
    """Until ``count`` nodes are alive, asked through the dashboard's state API."""
    import httpx

    headers = auth_headers()
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        _check_alive(state)
        try:
            answer = httpx.get(
                f"{state.dashboard_url}/api/v0/nodes", headers=headers, params={"limit": 100}
            )
            if answer.status_code == 200:
                listed = answer.json()["data"]["result"]["result"]
                if sum(1 for n in listed if n["state"] == "ALIVE") >= count:
                    return
        except (httpx.HTTPError, KeyError, ValueError):
            pass
        time.sleep(1)
    raise ClusterError(f"only some of the {count} Ray nodes came up within {timeout_s:.0f} s")


def _wait_for_mlflow(state: ClusterState, timeout_s: float = 120) -> None:
    import httpx

    deadline = time.time() + timeout_s
    while time.time() < deadline:
        _check_alive(state)
        try:
            if httpx.get(f"{state.tracking_uri}/health").status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise ClusterError(f"the MLflow server did not answer within {timeout_s:.0f} s")


def _check_alive(state: ClusterState) -> None:
    for process in state.processes:
        if not running(process):
            tail = Path(process.log).read_text()[-1500:] if Path(process.log).exists() else ""
            raise ClusterError(f"{process.role} exited; the end of {process.log}:\n{tail}")


def node_rows(state: ClusterState) -> list[tuple[str, str, str, str]]:
    """(role, pid, state, detail) for every process, plus the nodes Ray reports."""
    import httpx

    rows = [
        (p.role, str(p.pid), "running" if running(p) else "stopped", p.log) for p in state.processes
    ]
    try:
        answer = httpx.get(
            f"{state.dashboard_url}/api/v0/nodes", headers=auth_headers(), params={"limit": 100}
        )
        for node in answer.json()["data"]["result"]["result"]:
            resources = ", ".join(f"{k} {v:g}" for k, v in sorted(node["resources_total"].items()))
            rows.append(("ray node", node["node_id"][:12], node["state"].lower(), resources))
    except (httpx.HTTPError, KeyError, ValueError):
        rows.append(("ray node", "-", "unreachable", state.dashboard_url))
    return rows
