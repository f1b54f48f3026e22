from pathlib import Path

from orchestrator.environment import RAY_JOB_ENV_VAR, state_root


def test_state_root_is_the_working_directory(monkeypatch, tmp_path):
    monkeypatch.delenv(RAY_JOB_ENV_VAR, raising=False)
    monkeypatch.chdir(tmp_path)
    assert state_root() == tmp_path


def test_state_root_survives_a_ray_jobs_temporary_working_directory(monkeypatch, tmp_path):
    monkeypatch.setenv(RAY_JOB_ENV_VAR, "{}")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert state_root() == Path(tmp_path) / ".redblue"
    assert state_root().is_dir()


PREPARED_ENV = """
import json, os, sys
from orchestrator.environment import prepare_driver_env
prepare_driver_env(sys.argv[1] or None)
print(json.dumps(dict(os.environ)))
"""


def prepared_env(address: str | None, env: dict[str, str]) -> dict[str, str]:
    """The environment ``prepare_driver_env(address)`` leaves in a new Python process started
    with only ``env`` (none of the settings tests/conftest.py gives this process)."""
    import json
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", PREPARED_ENV, address or ""],
        capture_output=True,
        text=True,
        env=env,
        cwd=Path(__file__).parents[2],
        check=True,
    )
    return json.loads(out.stdout)


def test_driver_env_keeps_telemetry_off_and_loopback():
    env = prepared_env(None, {})
    assert env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] == "0"
    assert env["MLFLOW_DISABLE_TELEMETRY"] == "true"
    assert env["RAY_USAGE_STATS_ENABLED"] == "0"
    # The user's own settings are kept; joining a cluster leaves Ray's node address alone.
    kept = prepared_env(None, {"RAY_USAGE_STATS_ENABLED": "1"})
    assert kept["RAY_USAGE_STATS_ENABLED"] == "1"
    remote = prepared_env("127.0.0.2:6379", {})
    assert "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER" not in remote
    assert remote["MLFLOW_DISABLE_TELEMETRY"] == "true"


def test_deepspeed_ops_build_with_this_environments_ninja(monkeypatch, tmp_path):
    """A worker that finds another ninja first rebuilds DeepSpeed's op (about 30 s): ninja 1.12
    records its build commands with a different hash than the system's 1.11."""
    import os
    import shutil
    import sys
    from pathlib import Path

    from trainers.prebuild import use_venv_build_cache

    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    monkeypatch.delenv("TORCH_EXTENSIONS_DIR", raising=False)
    use_venv_build_cache()
    use_venv_build_cache()
    venv_bin = str(Path(sys.executable).parent)
    assert os.environ["PATH"] == f"{venv_bin}:/usr/bin:/bin"
    assert os.environ["TORCH_EXTENSIONS_DIR"] == str(Path(sys.prefix) / "torch_extensions")
    assert shutil.which("ninja") == str(Path(venv_bin) / "ninja")


def test_ports_chosen_together_are_distinct_and_free():
    import socket

    from orchestrator.environment import free_ports

    for _ in range(20):
        ports = free_ports(12)
        assert len(set(ports)) == 12
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", ports[0]))  # each one could be bound


def test_the_cluster_notes_are_hidden_and_every_other_line_printed():
    """What a driver prints of its cluster's output (Ray's log_to_driver handler, here one that
    records) leaves out the notes that ask nothing of the user, once however often it is asked."""
    from orchestrator.environment import CLUSTER_NOTES, LOCAL_NOTES
    from orchestrator.ray_internals import (
        PRINT_HANDLER,
        global_worker_stdstream_dispatcher,
        hide_cluster_lines,
    )

    printed: list[list[str]] = []
    dispatcher = global_worker_stdstream_dispatcher
    saved = list(dispatcher.handlers)
    dispatcher.handlers = [(PRINT_HANDLER, lambda data: printed.append(data["lines"]))]
    try:
        hide_cluster_lines(CLUSTER_NOTES + LOCAL_NOTES)
        hide_cluster_lines(CLUSTER_NOTES + LOCAL_NOTES)  # a second connect_ray: wrapped once
        assert len(dispatcher.handlers) == 1
        pg = "Detected that the Ray Train controller actor (ab12) is dead. Cleaning up ..."
        host = "WARNING controller 1 -- HTTPOptions.host='127.0.0.1' won't accept connections from "
        host += "HAProxy on other nodes; cross-node routing will fail with connection refused."
        dispatcher.emit({"lines": [pg, "round 1/2  val 0.5", host], "pid": 7, "is_err": False})
        watcher = "core_worker.cc:2465: Actor with class name: 'PreemptionWatcher' and ID: '9a'"
        dispatcher.emit({"lines": [pg, watcher], "pid": 8, "is_err": True})  # nothing to print
    finally:
        dispatcher.handlers = saved
    assert printed == [["round 1/2  val 0.5"]]
