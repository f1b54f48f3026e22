"""The few private Ray names redblue relies on, in one module tied to the pinned Ray (2.60.x).

Ray Train v2 reads its worker-group start timeout and its controller's poll interval from
environment variables it does not export, raises a startup-timeout error it does not export,
and logs every report under a logger named after one of its files; Ray Jobs caps the working
directory it uploads at a size it does not export, and packs it with a walk it does not export;
``ray start`` records the machine's current cluster in a file whose path only a private helper
gives; Ray Train's torch backend sets the
process group up with a private function (``orchestrator.training.process_group`` swaps in one
that binds the rendezvous store to one address); Ray Train's controller waits for Ray Data's
autoscaling coordinator, which a private function creates, and starts a Ray Data dataset manager
through a private callback even for a trainer without datasets. When Ray is upgraded, check these
first.
Importing this module imports Ray: import it where Ray is imported already (or lazily).
"""

import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import ray.train.torch.config as torch_config
from ray._common.utils import get_ray_address_file
from ray._private.ray_constants import (
    RAY_RUNTIME_ENV_IGNORE_GITIGNORE,
    get_runtime_env_default_excludes,
)
from ray._private.runtime_env.packaging import GCS_STORAGE_MAX_SIZE, _dir_travel, _get_excludes
from ray.data._internal.cluster_autoscaler.default_autoscaling_coordinator import (
    get_or_create_autoscaling_coordinator,
)
from ray.train.torch import TorchTrainer
from ray.train.torch.config import _TorchBackend as TorchBackend
from ray.train.v2._internal.callbacks.datasets import DatasetsCallback
from ray.train.v2._internal.constants import (
    HEALTH_CHECK_INTERVAL_S_ENV_VAR,
    WORKER_GROUP_START_TIMEOUT_S_ENV_VAR,
)
from ray.train.v2._internal.exceptions import WorkerGroupStartupTimeoutError
from ray.train.v2._internal.execution import context as train_context

TRAIN_REPORT_LOGGER = train_context.__file__  # Ray Train v2 logs each report at INFO under it


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


@contextmanager
def torch_backend_setup(setup: Callable[..., None]) -> Iterator[None]:
    """Within it, ``TorchBackend.on_start`` sends the workers ``setup`` (called with the same
    arguments) in place of Ray Train's ``_setup_torch_process_group``. ``on_start`` runs in the
    run's own controller process; ``setup`` reaches the workers by its module and name."""
    original = torch_config._setup_torch_process_group
    torch_config._setup_torch_process_group = setup
    try:
        yield
    finally:
        torch_config._setup_torch_process_group = original


__all__ = [
    "GCS_STORAGE_MAX_SIZE",
    "HEALTH_CHECK_INTERVAL_S_ENV_VAR",
    "TRAIN_REPORT_LOGGER",
    "TorchBackend",
    "WORKER_GROUP_START_TIMEOUT_S_ENV_VAR",
    "WorkerGroupStartupTimeoutError",
    "get_ray_address_file",
    "torch_backend_setup",
    "working_dir_files",
]


def start_autoscaling_coordinator() -> None:
    """Create the node's autoscaling coordinator (a detached actor every Ray Train controller
    asks for resources first), so that a controller finds it instead of starting it and
    waiting: called beside a new local Ray's other start-up work."""
    get_or_create_autoscaling_coordinator()


class TrainerWithoutIdleDatasets(TorchTrainer):
    """A TorchTrainer that starts Ray Data's dataset manager only when it is given datasets:
    without them the manager is one more process to start (about a second of CPU) beside the
    workers' own start, for nothing."""

    def _create_default_callbacks(self):
        callbacks = super()._create_default_callbacks()
        if self.datasets:
            return callbacks
        return [c for c in callbacks if not isinstance(c, DatasetsCallback)]
