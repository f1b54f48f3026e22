"""The few private Ray names redblue relies on, in one module tied to the pinned Ray (2.60.x).

Ray Train v2 reads its worker-group start timeout and its controller's poll interval from
environment variables it does not export, raises a startup-timeout error it does not export,
and logs every report under a logger named after one of its files; Ray Jobs caps the working
directory it uploads at a size it does not export; ``ray start`` records the machine's current
cluster in a file whose path only a private helper gives. When Ray is upgraded, check these
first.
Importing this module imports Ray: import it where Ray is imported already (or lazily).
"""

from ray._common.utils import get_ray_address_file
from ray._private.runtime_env.packaging import GCS_STORAGE_MAX_SIZE
from ray.train.v2._internal.constants import (
    HEALTH_CHECK_INTERVAL_S_ENV_VAR,
    WORKER_GROUP_START_TIMEOUT_S_ENV_VAR,
)
from ray.train.v2._internal.exceptions import WorkerGroupStartupTimeoutError
from ray.train.v2._internal.execution import context as train_context

TRAIN_REPORT_LOGGER = train_context.__file__  # Ray Train v2 logs each report at INFO under it

__all__ = [
    "GCS_STORAGE_MAX_SIZE",
    "HEALTH_CHECK_INTERVAL_S_ENV_VAR",
    "TRAIN_REPORT_LOGGER",
    "WORKER_GROUP_START_TIMEOUT_S_ENV_VAR",
    "WorkerGroupStartupTimeoutError",
    "get_ray_address_file",
]
