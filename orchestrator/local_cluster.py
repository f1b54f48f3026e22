"""``redblue cluster up|status|down``: a multi-node Ray cluster and an MLflow server on loopback.

Every node is a ``ray start --block`` process of its own (the head, then N-1 workers joining it),
each with its own ports, CPUs and a ``node:<i>`` resource, on the loopback address 127.0.0.2,
token auth on, the dashboard and job API on 127.0.0.1. The tracking server is ``mlflow server``
on SQLite with served artifacts, on 127.0.0.1; it starts first, and every node's environment
holds its ``MLFLOW_TRACKING_URI`` (as the launch files set it), so a plain ``ray job submit``
logs there. What ``up`` started is written to
``.redblue/cluster.json`` (pids, start times and command lines; replaced atomically); ``down``
stops exactly those processes and their process groups, after checking each pid is still the
process it recorded (same start time, same command), and leaves any other alone. The Ray token
file it creates is readable by its owner only (mode 600).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from orchestrator.environment import free_port, state_root

HOST = "127.0.0.1"  # the dashboard, job API and MLflow server
# The nodes' address. Ray 2.60's `ray start` replaces 127.0.0.1 (and "localhost") with the
# machine's network address (services.resolve_ip_for_localhost) unless clusters are disabled,
# which refuses worker nodes; any other loopback address is kept as given.
NODE_IP = "127.0.0.2"
STATE_FILE = Path(".redblue") / "cluster.json"
STOP_GRACE_S = 8.0


class ClusterError(RuntimeError):
    """The cluster cannot be started, found or stopped; the message says why."""


@dataclass
class Process:
    role: str  # head, worker-1, ..., mlflow
    pid: int
    command: list[str]
    log: str
    started: float = 0.0  # psutil's create time; 0 in state files written before it was kept


@dataclass
class ClusterState:
    gcs_port: int
    dashboard_port: int
    mlflow_port: int
    nodes: int
    cpus_per_node: float
    folder: str
    processes: list[Process] = field(default_factory=list)

    @property
    def ray_address(self) -> str:
        return f"{NODE_IP}:{self.gcs_port}"

    @property
    def dashboard_url(self) -> str:
        return f"http://{HOST}:{self.dashboard_port}"

    @property
    def tracking_uri(self) -> str:
        return f"http://{HOST}:{self.mlflow_port}"

    def exports(self) -> str:
        """What ``eval "$(redblue cluster up)"`` runs."""
        return (
            f"export RAY_ADDRESS={self.ray_address}\n"
            f"export MLFLOW_TRACKING_URI={self.tracking_uri}\n"
            "export RAY_AUTH_MODE=token\n"
            f"# jobs: ray job submit --address {self.dashboard_url} --working-dir . -- ...\n"
        )


def state_path() -> Path:
    return state_root() / STATE_FILE


def load_state() -> ClusterState | None:
    path = state_path()
    if not path.is_file():
        return None
    raw = json.loads(path.read_text())
    raw["processes"] = [Process(**p) for p in raw["processes"]]
    return ClusterState(**raw)


def save_state(state: ClusterState) -> None:
    """Write the state file atomically: a reader (or a crash) sees the old file or the new one."""
    path = state_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with temporary.open("w") as handle:
        handle.write(json.dumps(asdict(state), indent=2))
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def running(process: Process) -> bool:
    """Whether ``process.pid`` is still the process ``up`` started: the same start time (when
    recorded) and the same command, so a reused pid is never taken for it."""
    import psutil

    try:
        found = psutil.Process(process.pid)
        if process.started and abs(found.create_time() - process.started) >= 0.5:
            return False
        cmdline = found.cmdline()
        # A script runs as `python /path/ray start ...`: compare the arguments after the program.
        return (
            found.status() != "zombie"
            and cmdline[-len(process.command) + 1 :] == (process.command[1:])
        )
    except psutil.Error:
        return False


def up(nodes: int, cpus_per_node: float, log) -> ClusterState:
    """Start the tracking server, the head and ``nodes - 1`` workers; wait until all are ready."""
    existing = load_state()
    if existing and any(running(p) for p in existing.processes):
        raise ClusterError(
            f"a local cluster already runs (RAY_ADDRESS={existing.ray_address}); "
            "stop it first with: redblue cluster down"
        )
    folder = state_root() / ".redblue" / "cluster"
    folder.mkdir(parents=True, exist_ok=True)
    state = ClusterState(
        gcs_port=free_port(),
        dashboard_port=free_port(),
        mlflow_port=free_port(),
        nodes=nodes,
        cpus_per_node=cpus_per_node,
        folder=str(folder),
    )
    env = cluster_env()
    # Every node carries the tracking URI, as the launch files set it: a job's driver (run with
    # the head's environment) logs to this server. So the server starts first.
    node_env = {**env, "MLFLOW_TRACKING_URI": state.tracking_uri}
    try:
        log(f"starting the MLflow server on {state.tracking_uri} ...")
        state.processes.append(_start_mlflow(state, folder, env))
        save_state(state)
        _wait_for_mlflow(state)
        # One at a time: on a small machine, raylets starting together time out.
        log(f"starting the head node ({cpus_per_node:g} CPUs) on {state.ray_address} ...")
        state.processes.append(_start_node(state, 0, folder, node_env))
        save_state(state)
        _wait_for_nodes(state, 1)
        for index in range(1, nodes):
            log(f"starting worker node {index} ...")
            state.processes.append(_start_node(state, index, folder, node_env))
            save_state(state)
            _wait_for_nodes(state, index + 1)
    except Exception:
        save_state(state)
        down(state, log)
        raise
    save_state(state)
    return state


def cluster_env() -> dict[str, str]:
    """The environment of every process of the cluster: token auth on, telemetry off."""
    env = {
        **os.environ,
        "RAY_AUTH_MODE": "token",
        "RAY_USAGE_STATS_ENABLED": "0",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        # A stopped job's driver gets SIGTERM, then SIGKILL after this: time to record its end.
        "RAY_JOB_STOP_WAIT_TIME_S": "15",
    }
    env.pop("RAY_ADDRESS", None)
    env.pop("MLFLOW_TRACKING_URI", None)  # the nodes get this cluster's; see up()
    # Jobs run `redblue ...` through a shell: this environment's commands come first.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    # Set for in-process local Rays (loopback, single node); `ray start` would then refuse to
    # add nodes. Every node here gets --node-ip-address=127.0.0.1 instead.
    env.pop("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", None)
    return env


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


def _start_node(state: ClusterState, index: int, folder: Path, env: dict[str, str]) -> Process:
    ray = str(Path(sys.executable).with_name("ray"))
    command = [
        ray,
        "start",
        "--block",
        f"--node-ip-address={NODE_IP}",
        f"--num-cpus={state.cpus_per_node:g}",
        f'--resources={{"node:{index}": 1}}',
        "--disable-usage-stats",
        f"--dashboard-agent-listen-port={free_port()}",
        f"--dashboard-agent-grpc-port={free_port()}",
        f"--runtime-env-agent-port={free_port()}",
        f"--metrics-export-port={free_port()}",
    ]
    if index == 0:
        command += [
            "--head",
            f"--port={state.gcs_port}",
            f"--dashboard-host={HOST}",
            f"--dashboard-port={state.dashboard_port}",
            f"--ray-client-server-port={free_port()}",
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
    ]
    return _spawn("mlflow", command, folder, env)


def _wait_for_nodes(state: ClusterState, count: int, timeout_s: float = 120) -> None:
    """Until ``count`` nodes are alive, asked through the dashboard's state API."""
    import httpx

    headers = _auth_headers()
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


def token_path() -> Path:
    """The file Ray reads its token from: ``$RAY_AUTH_TOKEN_PATH``, else ``~/.ray/auth_token``."""
    configured = os.environ.get("RAY_AUTH_TOKEN_PATH")
    return Path(configured).expanduser() if configured else Path.home() / ".ray" / "auth_token"


def _auth_headers() -> dict[str, str]:
    token_file = token_path()
    token = os.environ.get("RAY_AUTH_TOKEN") or (
        token_file.read_text().strip() if token_file.is_file() else ""
    )
    return {"Authorization": f"Bearer {token}"} if token else {}


def ensure_token() -> Path | None:
    """Ray's token auth needs a token before the first node starts: make one if none exists
    (256 random bits, as ``ray get-auth-token --generate`` makes), created with mode 600; an
    existing token file is made mode 600 too. Returns the file, or None when the token comes
    from ``$RAY_AUTH_TOKEN``."""
    import secrets

    if os.environ.get("RAY_AUTH_TOKEN"):
        return None
    token_file = token_path()
    if not token_file.is_file():
        token_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            descriptor = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another `up` made it meanwhile
            pass
        else:
            with os.fdopen(descriptor, "w") as handle:
                handle.write(secrets.token_hex(32))
    token_file.chmod(0o600)
    return token_file


def node_rows(state: ClusterState) -> list[tuple[str, str, str, str]]:
    """(role, pid, state, detail) for every process, plus the nodes Ray reports."""
    import httpx

    rows = [
        (p.role, str(p.pid), "running" if running(p) else "stopped", p.log) for p in state.processes
    ]
    try:
        answer = httpx.get(
            f"{state.dashboard_url}/api/v0/nodes", headers=_auth_headers(), params={"limit": 100}
        )
        for node in answer.json()["data"]["result"]["result"]:
            resources = ", ".join(f"{k} {v:g}" for k, v in sorted(node["resources_total"].items()))
            rows.append(("ray node", node["node_id"][:12], node["state"].lower(), resources))
    except (httpx.HTTPError, KeyError, ValueError):
        rows.append(("ray node", "-", "unreachable", state.dashboard_url))
    return rows


def down(state: ClusterState, log, grace_s: float = STOP_GRACE_S) -> list[str]:
    """Stop the recorded processes and their process groups (each was started as the leader of
    its own group, which Ray's node processes join): SIGTERM, then SIGKILL after ``grace_s``
    (Ray's GCS and ``ray start --block`` linger for 30 s and more after SIGTERM; the cluster
    keeps no state worth that wait).

    Only a process verified as the one ``up`` started (:func:`running`: pid, start time and
    command) is signalled, with its group; a recorded pid that now belongs to another process is
    left alone. Processes that exit meanwhile are fine."""
    stopped, groups = [], set()
    for process in reversed(state.processes):
        if not running(process):
            if _exists(process.pid):
                log(f"pid {process.pid} is no longer the {process.role} `up` started; left alone")
            continue
        log(f"stopping {process.role} (pid {process.pid}) ...")
        groups.add(process.pid)
        stopped.append(process.role)
        with contextlib.suppress(ProcessLookupError):  # the group exited since the check
            os.killpg(process.pid, signal.SIGTERM)
    deadline = time.time() + grace_s
    while time.time() < deadline and _group_members(groups):
        time.sleep(0.5)
    for member in _group_members(groups):
        _signal(member, signal.SIGKILL)
    deadline = time.time() + 10
    while time.time() < deadline and _group_members(groups):
        time.sleep(0.2)
    _forget_address(state)
    state_path().unlink(missing_ok=True)
    return stopped


def _exists(pid: int) -> bool:
    import psutil

    return psutil.pid_exists(pid)


def _signal(process, signum: int) -> None:
    """Signal a psutil process, which checks it is still the same one; gone is fine."""
    import psutil

    with contextlib.suppress(psutil.Error):  # gone, or reused (psutil checks)
        process.send_signal(signum)


def _forget_address(state: ClusterState) -> None:
    """``ray start`` left this cluster's address as the machine's "current" Ray; Ray processes
    started later (Ray Train's helpers, the state API) would look for the dead cluster there."""
    from ray._common.utils import get_ray_address_file

    address_file = Path(get_ray_address_file(None))
    if address_file.is_file() and address_file.read_text().strip() == state.ray_address:
        address_file.unlink(missing_ok=True)


def _group_members(groups: set[int]) -> list:
    """Live processes (psutil) in ``groups``, the process groups verified as ``up``'s (zombies
    excluded). A group's id stays taken while any member lives, so these are its processes."""
    import psutil

    members = []
    for candidate in psutil.process_iter(["pid", "status"]):
        try:
            if os.getpgid(candidate.pid) in groups and candidate.info["status"] != "zombie":
                members.append(candidate)
        except (ProcessLookupError, PermissionError):
            continue
    return members
