"""What ``redblue cluster up`` started, recorded in ``.redblue/cluster.json``: its addresses and
its processes (pids, start times and command lines), replaced atomically; and whether a recorded
process is still the one that was started.
"""

from __future__ import annotations

import json
import os
import shlex
from dataclasses import asdict, dataclass, field
from pathlib import Path

from orchestrator.environment import state_root

HOST = "127.0.0.1"  # the dashboard, job API and MLflow server
# The nodes' address. Ray 2.60's `ray start` replaces 127.0.0.1 (and "localhost") with the
# machine's network address (services.resolve_ip_for_localhost) unless clusters are disabled,
# which refuses worker nodes; any other loopback address is kept as given.
NODE_IP = "127.0.0.2"
STATE_FILE = Path(".redblue") / "cluster.json"


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

    @property
    def password_file(self) -> Path:
        """The tracking server's admin password (mode 600)."""
        return Path(self.folder) / "mlflow-admin-password"

    def exports(self) -> str:
        """What ``eval "$(redblue cluster up)"`` runs (the password is read from its file, not
        printed)."""
        return (
            f"export RAY_ADDRESS={self.ray_address}\n"
            f"export MLFLOW_TRACKING_URI={self.tracking_uri}\n"
            "export MLFLOW_TRACKING_USERNAME=admin\n"
            f'export MLFLOW_TRACKING_PASSWORD="$(cat {shlex.quote(str(self.password_file))})"\n'
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
