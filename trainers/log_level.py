"""How much the libraries (Ray, Ray Train, Tune, Serve, DeepSpeed) log: WARNING unless the user
asks for more with ``redblue --log-level`` (or ``-v``), which the environment carries to every
process the command starts."""

from __future__ import annotations

import os

LOG_LEVEL_ENV = "REDBLUE_LOG_LEVEL"
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
DEFAULT_LEVEL = "WARNING"


def library_log_level() -> str:
    """The level asked for (``$REDBLUE_LOG_LEVEL``), WARNING when unset or not a level."""
    level = os.environ.get(LOG_LEVEL_ENV, DEFAULT_LEVEL).strip().upper()
    return level if level in LEVELS else DEFAULT_LEVEL
