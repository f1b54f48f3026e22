"""Process environment and Ray start-up: loopback by default, no telemetry, token auth kept on."""

from __future__ import annotations

import logging
import math
import os
import sys
import warnings
from pathlib import Path

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


def prepare_driver_env(address: str | None) -> None:
    """Set defaults (never overriding the user's) before ``ray`` is imported."""
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)
    if not (address or os.environ.get("RAY_ADDRESS")):
        for key, value in LOCAL_ENV.items():
            os.environ.setdefault(key, value)


def use_venv_extension_cache() -> None:
    """Keep DeepSpeed's JIT-built ops in this environment (built once by ``trainers.prebuild``).

    One shared ~/.cache/torch_extensions would be rebuilt whenever another installation of
    DeepSpeed (another clone's .venv) built the same op there.
    """
    os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(Path(sys.prefix) / "torch_extensions"))


def prepare_worker_env(use_gpu: bool) -> None:
    """Inside a Ray Train worker, before DeepSpeed is imported: pick its accelerator."""
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)
    if not use_gpu:
        os.environ["DS_ACCELERATOR"] = "cpu"
    use_venv_extension_cache()
    logging.getLogger("ray.train").setLevel(logging.WARNING)
    # Ray Train v2 logs every report at INFO under a logger named after its file path.
    from ray.train.v2._internal.execution import context as train_context

    logging.getLogger(train_context.__file__).setLevel(logging.WARNING)
    # Ray Train copies print() into root-logger records too; see DeepSpeedReplica for this one.
    logging.getLogger().addFilter(
        lambda record: not record.getMessage().endswith("shm_comm_op built successfully")
    )
    # DeepSpeed 0.19 still calls this torch collective under its old name.
    warnings.filterwarnings(
        "ignore", message=r".*all_gather_into_tensor. is deprecated", category=FutureWarning
    )


def connect_ray(address: str | None, cpus_needed: float) -> str:
    """Join the cluster at ``address``/``RAY_ADDRESS``, or start a local Ray on 127.0.0.1.

    Returns a short description of what it connected to.
    """
    import ray

    address = address or os.environ.get("RAY_ADDRESS")
    if ray.is_initialized():
        return "the Ray cluster this process already joined"
    if address:
        ray.init(address=address, log_to_driver=True)
        return f"Ray cluster at {address}"
    cpus = math.ceil(max(float(os.cpu_count() or 1), cpus_needed))
    # Nodes of a local Ray are never preempted; the watcher would be one more process to start.
    os.environ.setdefault("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")
    ray.init(
        address="local",  # a new local instance, even when a `ray start` cluster runs here
        num_cpus=cpus,
        # The dashboard serves the state API that Ray Train's controller polls; loopback only.
        include_dashboard=True,
        dashboard_host="127.0.0.1",
        _node_ip_address="127.0.0.1",
        log_to_driver=True,
    )
    return f"a local Ray on 127.0.0.1 ({cpus} CPUs)"
