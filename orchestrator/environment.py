"""Process environment and Ray start-up: loopback by default, no telemetry, token auth kept on."""

from __future__ import annotations

import logging
import math
import os
import signal
import sys
import threading
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from importlib import metadata
from pathlib import Path
from typing import TypeVar

from trainers.log_level import DEFAULT_LEVEL, LOG_LEVEL_ENV

T = TypeVar("T")

# Set by Ray in the environment of a submitted job's entrypoint.
RAY_JOB_ENV_VAR = "RAY_JOB_CONFIG_JSON_ENV_VAR"
# Read by Ray when it is first imported: an in-process local Ray binds its node to 127.0.0.1.
LOCAL_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
QUIET_ENV = {
    "RAY_USAGE_STATS_ENABLED": "0",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "1",
    "RAY_TRAIN_V2_ENABLED": "1",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    # MLflow prints a run's page on a tracking server each time a run is left (several times a
    # run here); the summary gives it once.
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
    # Tune's own reporter prints its configuration box, its results folder and a TensorBoard line
    # (a folder in Ray's temporary session) whatever its verbosity; sweeps print their own.
    "RAY_AIR_NEW_OUTPUT": "0",
}


def state_root() -> Path:
    """Where local state (SQLite MLflow store, checkpoints) goes by default.

    The working directory; but inside a ``ray job submit`` job, whose working directory is a
    temporary copy that Ray deletes, ``~/.redblue`` on the node running the job.
    """
    if os.environ.get(RAY_JOB_ENV_VAR):
        root = Path.home() / ".redblue"
        root.mkdir(parents=True, exist_ok=True)
        return root
    return Path.cwd()


def leave_ray_job_folder() -> None:
    """Inside a Ray job, work from the job's state folder (:func:`state_root`).

    The job's working directory is Ray's unpacked copy, which Ray 2.60 may delete while the job
    still runs (after the Train workers that shared it exit); call this once every path of the
    config is absolute (:func:`orchestrator.config.resolve_paths`).
    """
    if os.environ.get(RAY_JOB_ENV_VAR):
        os.chdir(state_root())


def prepare_driver_env(address: str | None) -> None:
    """Set defaults (never overriding the user's) before ``ray`` is imported."""
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)
    # Notes the commands printed that ask nothing of the user: Ray's that token authentication
    # is on (with how to turn it off; Redblue keeps it on), MLflow's that it creates a new SQLite
    # database's tables and that it checks a logged model's input example.
    logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel("ERROR")
    for name in ("mlflow.store.db.utils", "mlflow.pyfunc"):
        logging.getLogger(name).setLevel("WARNING")
    if not (address or os.environ.get("RAY_ADDRESS")):
        for key, value in LOCAL_ENV.items():
            os.environ.setdefault(key, value)


def interrupt_on_sigterm() -> None:
    """SIGTERM (a stopped Ray job, a process manager) and SIGINT both raise KeyboardInterrupt,
    so a command records its end (MLflow run, deployment removed) before it exits. SIGINT is
    set too: a background shell job, and Ray's job runner, start with it ignored or blocked.
    Signal handlers belong to the main thread; elsewhere this does nothing."""
    import threading

    def interrupt(signum, frame) -> None:
        raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():
        return
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, interrupt)


def prepare_worker_env(use_gpu: bool, log_level: str = DEFAULT_LEVEL) -> None:
    """Inside a Ray Train worker, before DeepSpeed is imported: pick its accelerator, and log
    at the driver's ``log_level`` (:mod:`trainers.log_level`)."""
    from trainers.prebuild import use_venv_build_cache

    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)
    os.environ[LOG_LEVEL_ENV] = log_level  # a cluster's workers do not share the driver's env
    if not use_gpu:
        os.environ["DS_ACCELERATOR"] = "cpu"
    use_venv_build_cache()
    logging.getLogger("ray.train").setLevel(log_level)
    # Ray Train v2 logs every report at INFO under a logger named after its file path.
    from orchestrator.ray_internals import TRAIN_REPORT_LOGGER

    logging.getLogger(TRAIN_REPORT_LOGGER).setLevel(log_level)
    # Ray Train copies print() into root-logger records too; see DeepSpeedEngine for this one.
    logging.getLogger().addFilter(
        lambda record: not record.getMessage().endswith("shm_comm_op built successfully")
    )
    # DeepSpeed 0.19 still calls these torch collectives under their old names.
    warnings.filterwarnings(
        "ignore",
        message=r".*(all_gather_into_tensor|reduce_scatter_tensor). is deprecated",
        category=FutureWarning,
    )


# Ray keeps as many idle worker processes as a node has CPUs and kills the others after 1 s idle.
# A streamed table's reading tasks take no CPU and come and go beside the training workers:
# beyond that limit each would start a new process (a second of CPU each, measured at 10M rows:
# throughput fell 3x). More idle workers, kept longer, are reused instead.
RAY_SYSTEM_CONFIG = {"num_workers_soft_limit": 16, "idle_worker_killing_time_threshold_ms": 60_000}


# What Ray's processes print that asks nothing of the user: Ray Train's note for every run whose
# controller ended (each trial a sweep's scheduler stops), its controller's error line about its
# own preemption watcher's constructor arguments (ray-project/ray#53727) on a cluster, and, on a
# local Ray of one node, Serve's warning that HAProxy on other nodes cannot reach a proxy bound
# to 127.0.0.1.
CLUSTER_NOTES = (
    "Detected that the Ray Train controller actor",
    "Actor with class name: 'PreemptionWatcher'",
)
LOCAL_NOTES = ("won't accept connections from HAProxy on other nodes",)


def starts_local_ray(address: str | None) -> bool:
    """Whether :func:`connect_ray` will start a local Ray (seconds of work in other processes,
    beside which this one can import what it needs later)."""
    if address or os.environ.get("RAY_ADDRESS"):
        return False
    ray = sys.modules.get("ray")  # not imported: not initialized either (and not imported here)
    return ray is None or not ray.is_initialized()


def connect_ray(address: str | None, cpus_needed: float) -> str:
    """Join the cluster at ``address``/``RAY_ADDRESS``, or start a local Ray on 127.0.0.1.

    Returns a short description of what it connected to.
    """
    import ray

    address = address or os.environ.get("RAY_ADDRESS")
    if ray.is_initialized():
        return f"Ray cluster at {address}" if address else "the Ray this process already joined"
    if address:
        ray.init(address=address, log_to_driver=True)
        interrupt_on_sigterm()  # replaces ray.init's handler, which aborts on the spot
        from orchestrator.ray_internals import hide_cluster_lines

        hide_cluster_lines(CLUSTER_NOTES)
        return f"Ray cluster at {address}"
    cpus = math.ceil(max(float(os.cpu_count() or 1), cpus_needed))
    # Nodes of a local Ray are never preempted; the watcher would be one more process to start.
    os.environ.setdefault("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")
    ray.init(
        address="local",  # a new local instance, even when a `ray start` cluster runs here
        num_cpus=cpus,
        _system_config=RAY_SYSTEM_CONFIG,
        # The dashboard serves the state API that Ray Train's controller polls; loopback only.
        include_dashboard=True,
        dashboard_host="127.0.0.1",
        _node_ip_address="127.0.0.1",
        log_to_driver=True,
    )
    interrupt_on_sigterm()  # replaces ray.init's handler, which aborts on the spot
    from orchestrator.ray_internals import hide_cluster_lines, start_autoscaling_coordinator

    hide_cluster_lines(CLUSTER_NOTES + LOCAL_NOTES)
    # Ray Train's controller would start it and wait (about 1.3 s); here it starts beside the
    # MLflow run's opening and the plan.
    threading.Thread(target=start_autoscaling_coordinator, daemon=True).start()
    return f"a local Ray on 127.0.0.1 ({cpus} CPUs)"


def connect_ray_while(
    task: Callable[[], T], address: str | None, cpus_needed: float
) -> tuple[T, str, BaseException | None]:
    """:func:`connect_ray` while ``task`` runs in a thread (opening the MLflow run: seconds on a
    fresh SQLite store). Returns the task's result, what Ray connected to, and what connecting
    raised (Ctrl-C too), for the caller to record on its MLflow run before giving up."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        running = pool.submit(task)
        where, problem = "", None
        try:
            where = connect_ray(address, cpus_needed)
        except BaseException as exc:
            problem = exc
        return running.result(), where, problem


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports free on 127.0.0.1 now: all are held until all are chosen
    (ports probed one after another may repeat, as a released port can be handed out again)."""
    import socket

    probes = [socket.socket() for _ in range(count)]
    try:
        for probe in probes:
            probe.bind(("127.0.0.1", 0))
        return [int(probe.getsockname()[1]) for probe in probes]
    finally:
        for probe in probes:
            probe.close()


VERSIONED_PACKAGES = ("redblue", "torch", "ray", "deepspeed", "mlflow")


def package_versions() -> dict[str, str]:
    """The installed versions of Redblue and the libraries it is tied to."""
    versions = {}
    for package in VERSIONED_PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "unknown"
    return versions
