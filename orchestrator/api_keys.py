"""The API key of a deployment: from the environment, else one generated once and kept private.

Replicas never see the key: they get its SHA-256 digest (``serve_apps.guard.key_digest``).
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path


def key_file() -> Path:
    """Where a generated key is kept: ``~/.redblue/api-key``, readable by the user only."""
    return Path.home() / ".redblue" / "api-key"


@dataclass(frozen=True)
class ApiKey:
    value: str
    source: str  # "env", "file" or "generated"
    path: Path | None = None

    def describe(self, env_name: str) -> str:
        if self.source == "env":
            return f"from ${env_name}"
        if self.source == "file":
            return f"from {self.path} (set ${env_name} to use another)"
        return f"generated and written to {self.path} (mode 600); shown once below"


def obtain_key(env_name: str) -> ApiKey:
    """The key in ``$env_name``; else the one in :func:`key_file`; else a new one written there."""
    value = os.environ.get(env_name, "").strip()
    if value:
        return ApiKey(value, "env")
    path = key_file()
    if path.is_file():
        stored = path.read_text().strip()
        if stored:
            if path.stat().st_mode & 0o077:
                path.chmod(0o600)
            return ApiKey(stored, "file", path)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    value = secrets.token_urlsafe(32)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(value + "\n")
    return ApiKey(value, "generated", path)
