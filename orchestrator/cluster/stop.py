"""``redblue cluster down``: stop exactly the processes ``up`` recorded and their process groups,
after checking each pid is still the process it recorded (same start time, same command), and
leave any other alone."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

from orchestrator.cluster.state import ClusterState, running, state_path

STOP_GRACE_S = 8.0


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
    from orchestrator.ray_internals import get_ray_address_file

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
