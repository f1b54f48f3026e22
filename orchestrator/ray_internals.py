"""The few private Ray names redblue relies on, in one module tied to the pinned Ray (2.60.x).

Ray Train v2 reads its worker-group start timeout and its controller's poll interval from
environment variables it does not export, raises a startup-timeout error it does not export,
and logs every report under a logger named after one of its files; Ray Jobs caps the working
directory it uploads at a size it does not export, and packs it with a walk it does not export;
``ray start`` records the machine's current cluster in a file whose path only a private helper
gives; Ray Train's torch backend (``orchestrator.training.process_group`` follows it) finds the
rendezvous address, sets the workers' distributed environment and shuts the process group down
with private functions; Ray Train's controller waits for Ray Data's autoscaling coordinator,
which a private function creates, and starts a Ray Data dataset manager through a private
callback even for a trainer without datasets; Ray Train's controller writes its checkpoint
manager's snapshot in place; Ray Data records every pipeline in a statistics
actor and keeps caches per pipeline that the streams' one-file pipelines would grow with the
table; a driver prints its cluster's output through a handler of a private dispatcher. When Ray
is upgraded, check these first.
Importing this module imports Ray but not torch (Ray Train's controller process imports it, and
never needs torch): the functions that run in a worker import Ray's torch integration there.
"""

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pyarrow.fs import LocalFileSystem
from ray._common.utils import get_ray_address_file
from ray._private.ray_constants import (
    RAY_RUNTIME_ENV_IGNORE_GITIGNORE,
    get_runtime_env_default_excludes,
)
from ray._private.runtime_env.packaging import GCS_STORAGE_MAX_SIZE, _dir_travel, _get_excludes
from ray._private.worker import global_worker_stdstream_dispatcher
from ray.actor import _ActorClassMethodMetadata
from ray.data._internal.cluster_autoscaler.default_autoscaling_coordinator import (
    get_or_create_autoscaling_coordinator,
)
from ray.data._internal.remote_fn import CACHED_FUNCTIONS
from ray.data._internal.stats import _StatsManager
from ray.train._internal.utils import get_address_and_port
from ray.train.constants import (
    DEFAULT_TORCH_PROCESS_GROUP_SHUTDOWN_TIMEOUT_S,
    TORCH_PROCESS_GROUP_SHUTDOWN_TIMEOUT_S,
)
from ray.train.v2._internal.callbacks.datasets import DatasetsCallback
from ray.train.v2._internal.constants import (
    HEALTH_CHECK_INTERVAL_S_ENV_VAR,
    WORKER_GROUP_START_TIMEOUT_S_ENV_VAR,
)
from ray.train.v2._internal.exceptions import WorkerGroupStartupTimeoutError
from ray.train.v2._internal.execution import context as train_context
from ray.train.v2._internal.execution.checkpoint.checkpoint_manager import CheckpointManager
from ray.train.v2._internal.util import TrainingFramework

TRAIN_REPORT_LOGGER = train_context.__file__  # Ray Train v2 logs each report at INFO under it
TORCH_FRAMEWORK = TrainingFramework.TORCH  # what Ray Train's state records of a torch run


def working_dir_files(root: Path, excludes: list[str]) -> list[Path]:
    """The files a job's upload of ``root`` holds, relative to it: Ray's own walk of the folder
    (its default excludes, then ``excludes``, then every folder's ``.gitignore`` unless
    ``RAY_RUNTIME_ENV_IGNORE_GITIGNORE=1``, and ``.rayignore``), as ``submit_job`` packs it."""
    root = root.absolute()
    include_gitignore = os.environ.get(RAY_RUNTIME_ENV_IGNORE_GITIGNORE, "0") != "1"
    patterns = get_runtime_env_default_excludes() + list(excludes)
    files: list[Path] = []

    def collect(path: Path) -> None:
        if path.is_file():
            files.append(path.relative_to(root))

    quiet = logging.getLogger("redblue.upload")  # Ray logs each ignore file it reads at INFO
    quiet.setLevel(logging.WARNING)
    _dir_travel(root, [_get_excludes(root, patterns)], collect, include_gitignore, quiet)
    return files


def excluded_by(root: Path, patterns: list[str]) -> Callable[[Path], bool]:
    """Whether a path under ``root`` matches ``patterns`` (gitignore rules, as Ray reads a job's
    excludes)."""
    return _get_excludes(root.absolute(), patterns)


def set_torch_distributed_env_vars() -> None:
    """In a worker: Ray Train's torch environment (ranks, world size, the device)."""
    from ray.train.torch.config import _set_torch_distributed_env_vars

    _set_torch_distributed_env_vars()


def shutdown_torch(destroy_process_group: bool) -> None:
    """In a worker: Ray Train's torch shutdown (the process group, the CUDA caches)."""
    from ray.train.torch.config import _shutdown_torch

    _shutdown_torch(destroy_process_group=destroy_process_group)


class TorchDeviceContext:
    """Around the train function in a worker: Ray Train's torch context (the CUDA device)."""

    def __init__(self) -> None:
        from ray.train.torch.config import TorchConfigContextManager

        self._context = TorchConfigContextManager()

    def __enter__(self) -> None:
        self._context.__enter__()

    def __exit__(self, *exc) -> bool:
        return bool(self._context.__exit__(*exc))


def torch_shutdown_timeout_s() -> int:
    """How long Ray Train waits for the workers' process groups to shut down."""
    from ray._private import ray_constants

    return ray_constants.env_integer(
        TORCH_PROCESS_GROUP_SHUTDOWN_TIMEOUT_S, DEFAULT_TORCH_PROCESS_GROUP_SHUTDOWN_TIMEOUT_S
    )


__all__ = [
    "DatasetsCallback",
    "GCS_STORAGE_MAX_SIZE",
    "HEALTH_CHECK_INTERVAL_S_ENV_VAR",
    "TRAIN_REPORT_LOGGER",
    "TORCH_FRAMEWORK",
    "WORKER_GROUP_START_TIMEOUT_S_ENV_VAR",
    "WorkerGroupStartupTimeoutError",
    "get_ray_address_file",
    "get_address_and_port",
    "working_dir_files",
]


def start_autoscaling_coordinator() -> None:
    """Create the node's autoscaling coordinator (a detached actor every Ray Train controller
    asks for resources first), so that a controller finds it instead of starting it and
    waiting: called beside a new local Ray's other start-up work."""
    get_or_create_autoscaling_coordinator()


def leave_pipelines_unrecorded() -> None:
    """This process's Ray Data pipelines are not recorded by Ray Data's statistics actor (nor
    its metrics, nor the dashboard's Data view). A stream starts a one-file pipeline per file and
    pass (about 5,000 over a 40M-row table's run): Ray keeps about 1 MB of metrics and statistics
    for each, for the whole session, in the statistics actor and the node's metrics agent."""

    def unrecorded(*args: Any, **kwargs: Any) -> None:
        return None

    for name in (
        "register_dataset_to_stats_actor",
        "update_execution_metrics",
        "update_iteration_metrics",
    ):
        setattr(_StatsManager, name, staticmethod(unrecorded))


def forget_finished_pipeline() -> None:
    """Drops what Ray keeps in this process from a finished pipeline and never uses again: the
    remote function of its map operator (Ray Data caches one per operator, keyed by the
    operator's id) and the method tables of the actor classes it declared (its autoscaling
    coordinator's, declared anew by every pipeline; Ray's own cache, which Ray clears on
    disconnect). Kept, they grow by about 60 kB per pipeline, so with the table's size."""
    for key in [key for key in CACHED_FUNCTIONS if getattr(key[0], "__name__", "") == "_map_task"]:
        del CACHED_FUNCTIONS[key]
    _ActorClassMethodMetadata.reset_cache()


def write_checkpoint_snapshots_whole() -> None:
    """In this process (Ray Train's controller), the checkpoint manager's snapshot (the list of a
    run's checkpoints that a restarted run reads) is written to a file beside it and renamed over
    it, on a local disk. Ray Train truncates and rewrites it in place, so a driver killed in that
    moment left it empty, and ``redblue train --resume`` then failed in Ray Train
    (``CheckpointManagerInitializationError: Expecting value``). An object store's upload
    replaces an object whole already."""

    def write_whole(self: CheckpointManager) -> None:
        snapshot = self._save_state().encode("utf-8")
        filesystem = self._storage_context.storage_filesystem
        path = self._storage_context.checkpoint_manager_snapshot_path
        written = f"{path}.partial" if isinstance(filesystem, LocalFileSystem) else path
        with filesystem.open_output_stream(written) as file:
            file.write(snapshot)
        if written != path:
            filesystem.move(written, path)

    CheckpointManager._write_state_to_storage = write_whole  # type: ignore[method-assign]


PRINT_HANDLER = "ray_print_logs"  # how ray.init(log_to_driver=True) prints the cluster's output


def hide_cluster_lines(fragments: tuple[str, ...]) -> None:
    """This driver prints its cluster's output (``log_to_driver``) without the lines that hold
    one of ``fragments``, until it disconnects."""
    dispatcher = global_worker_stdstream_dispatcher
    printing = [handler for name, handler in dispatcher.handlers if name == PRINT_HANDLER]
    if not printing or hasattr(printing[0], "hidden"):
        return

    def print_shown(data: dict[str, Any]) -> None:
        lines = [line for line in data["lines"] if not any(f in line for f in fragments)]
        if lines:
            printing[0]({**data, "lines": lines})

    print_shown.hidden = fragments  # type: ignore[attr-defined]
    dispatcher.remove_handler(PRINT_HANDLER)
    dispatcher.add_handler(PRINT_HANDLER, print_shown)
