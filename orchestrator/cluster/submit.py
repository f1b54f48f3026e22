"""``redblue submit -- train|sweep|compare CONFIG ...``: a command on a cluster, as a Ray job.

The working directory is uploaded without what a job never needs (``.git``, ``.venv``, MLflow and
Ray output, and everything ``.gitignore`` excludes) and without files named like secrets
(``SECRET_FILES``); a file whose content looks like a private key or a cloud credential is
refused unless allowed by name, and so is a package Ray would refuse, with its biggest files
named. The file list is Ray's own walk of the folder, so the preview is what Ray uploads. The job
gets ``MLFLOW_TRACKING_URI``, its logs are followed, and the exit code is the job's outcome.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from orchestrator.exit_codes import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK

ALWAYS_EXCLUDED = [
    ".git",
    ".venv",
    "mlruns",
    "mlartifacts",
    "mlflow.db",
    "ray_results",
    "logs",
    ".redblue",
    "__pycache__",
    ".pytest_cache",
]
# Left out of every upload unless allowed by name (gitignore patterns, as Ray reads excludes).
SECRET_FILES = [
    ".env*",
    "*.key",
    "*.pem",
    "*.p12",
    "*.pfx",
    "api-key*",
    "*secret*",
    "id_rsa*",
    "id_ecdsa*",
    "id_ed25519*",
    ".netrc",
]
# Content that is a credential whatever the file is called: a private key (PEM), an AWS access
# key id, a GCP service account's key file.
SECRET_CONTENT = re.compile(
    rb"-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----|\b(?:AKIA|ASIA)[0-9A-Z]{16}\b|\"private_key_id\"\s*:"
)
SNIFFED_BYTES = 1 << 20  # files are checked up to this size; bigger ones are data
EXIT_CODES = {"SUCCEEDED": EXIT_OK, "FAILED": EXIT_FAILED, "STOPPED": EXIT_INTERRUPTED}


class SubmitError(ValueError):
    """The job cannot be submitted as asked; the message says why."""


@dataclass(frozen=True)
class Package:
    root: Path
    files: list[tuple[Path, int]]  # (relative path, bytes)
    excludes: list[str]  # as handed to Ray with the working directory
    secrets_left_out: list[Path]  # files named like secrets, not uploaded

    @property
    def size(self) -> int:
        return sum(size for _, size in self.files)

    def biggest(self, count: int = 5) -> list[tuple[Path, int]]:
        return sorted(self.files, key=lambda item: -item[1])[:count]


def package(root: Path, allowed: Sequence[str] = ()) -> Package:
    """The files a job's working directory will hold (Ray's own walk of ``root``), without
    ``ALWAYS_EXCLUDED`` and ``SECRET_FILES`` but with the ``allowed`` paths (relative to
    ``root``). Raises :class:`SubmitError` for a file whose content looks like a credential,
    unless allowed."""
    from orchestrator.ray_internals import excluded_by, working_dir_files

    allowed_paths = {Path(name) for name in allowed}
    secrets = [*SECRET_FILES, *(f"!/{path.as_posix()}" for path in allowed_paths)]
    # One walk; the secret patterns then prune as Ray's walk would (a folder they match is not
    # entered, so nothing under it is allowed back).
    without_secrets = working_dir_files(root, ALWAYS_EXCLUDED)
    secret = excluded_by(root, secrets)
    names = [
        name
        for name in without_secrets
        if not any(secret(root / path) for path in [*name.parents[:-1], name])
    ]
    excludes = [*ALWAYS_EXCLUDED, *secrets]
    files = [(name, (root / name).stat().st_size) for name in names]
    credentials = [
        name
        for name, size in files
        if name not in allowed_paths and _holds_secret(root / name, size)
    ]
    if credentials:
        listed = ", ".join(str(name) for name in credentials[:5])
        raise SubmitError(
            f"{listed}: looks like a private key or credential, and would go to every node of "
            f"the cluster; move it out of this folder, or upload it anyway with --allow-file "
            f"{credentials[0]}"
        )
    left_out = sorted(set(without_secrets) - set(names))
    return Package(root, files, excludes, left_out)


def _holds_secret(path: Path, size: int) -> bool:
    if size > SNIFFED_BYTES:
        return False
    try:
        return SECRET_CONTENT.search(path.read_bytes()) is not None
    except OSError:
        return False


def check_size(found: Package, limit: int) -> None:
    """Refuse a package at or above ``limit`` bytes, naming its biggest files."""
    if found.size < limit:
        return
    biggest = ", ".join(f"{name} ({size / 2**20:.1f} MiB)" for name, size in found.biggest())
    raise SubmitError(
        f"the working directory holds {found.size / 2**20:.1f} MiB, over Ray's limit of "
        f"{limit / 2**20:.0f} MiB for a job package; the biggest files: {biggest}. Add them to "
        ".gitignore or move them out."
    )


def ray_package_limit() -> int:
    """The most bytes Ray accepts for a job's working directory (its gRPC message limit)."""
    from orchestrator.ray_internals import GCS_STORAGE_MAX_SIZE

    return int(GCS_STORAGE_MAX_SIZE)


def runtime_env(found: Package) -> dict:
    env_vars = {"RAY_USAGE_STATS_ENABLED": "0", "MLFLOW_DISABLE_TELEMETRY": "true"}
    tracking = os.environ.get("MLFLOW_TRACKING_URI", "")
    if tracking and "@" not in tracking:  # a URI with credentials stays out of the job's record
        env_vars["MLFLOW_TRACKING_URI"] = tracking
    # Ray also leaves out what .gitignore lists, as package() does.
    return {"working_dir": str(found.root), "excludes": found.excludes, "env_vars": env_vars}


def submission_problem(
    target: str | None, command: list[str], warn: Callable[[str], None]
) -> str | None:
    """Why ``redblue submit`` refuses ``command`` before anything is uploaded, or None: no
    cluster, not ``train|sweep|compare CONFIG ...``, a config that does not load, or a config
    outside the uploaded folder (the working directory)."""
    from orchestrator.config import ConfigError, load_config
    from orchestrator.worker_shape import WorkerChoice, any_cluster

    if not target:
        return "no cluster: pass --address or set RAY_ADDRESS (e.g. from redblue cluster up)"
    if len(command) < 2 or command[0] not in ("train", "sweep", "compare"):
        return (
            "submit runs `train CONFIG ...`, `sweep CONFIG ...` or `compare CONFIG ...` (after --)"
        )
    pairs = zip(command[2:], command[3:], strict=False)
    sets = [arg for flag, arg in pairs if flag in ("--set", "-s")]
    try:  # auto workers: the job chooses them on the cluster; any cluster holds one
        anywhere = WorkerChoice(command[0] != "train", any_cluster)
        load_config(Path(command[1]), sets, command[0] == "sweep", warn, anywhere)
    except ConfigError as exc:
        return str(exc)
    if not Path(command[1]).resolve().is_relative_to(Path.cwd()):
        return f"{command[1]} must be inside this folder (uploaded as the job's)"
    return None


def preview(found: Package, log) -> None:
    """Say what the upload holds and which secret-named files it leaves out."""
    log(f"the job's working directory: {len(found.files)} files, {found.size / 2**20:.1f} MiB")
    if found.secrets_left_out:
        names = ", ".join(str(name) for name in found.secrets_left_out[:5])
        more = len(found.secrets_left_out) - 5
        log(
            f"left out, named like secrets: {names}{f' and {more} more' if more > 0 else ''} "
            "(--allow-file PATH uploads one)"
        )


def submit(address: str, entrypoint: list[str], found: Package, follow: bool, log) -> int:
    """Submit ``redblue <entrypoint>`` with ``found`` as its working directory; follow its logs
    when asked; return the exit code."""
    import shlex

    from ray.job_submission import JobSubmissionClient

    check_size(found, ray_package_limit())
    client = JobSubmissionClient(address)
    command = shlex.join(["redblue", *entrypoint])
    log(f"uploading {len(found.files)} files ({found.size / 2**20:.1f} MiB) to {address} ...")
    job_id = client.submit_job(entrypoint=command, runtime_env=runtime_env(found))
    log(f"submitted job {job_id}: {command}")
    if not follow:
        log(f"follow it with: ray job logs --follow {job_id} --address {address}")
        return 0
    try:
        asyncio.run(_print_logs(client, job_id))
    except KeyboardInterrupt:
        log(f"stopping job {job_id} ...")
        client.stop_job(job_id)
    status = _final_status(client, job_id)
    log(f"job {job_id}: {status}")
    return EXIT_CODES.get(status, EXIT_FAILED)


def _final_status(client, job_id: str, wait_s: float = 60.0) -> str:
    """The job's status once it ended (a stopped job takes a few seconds to stop)."""
    import time

    deadline = time.monotonic() + wait_s
    status = client.get_job_status(job_id)
    while not status.is_terminal() and time.monotonic() < deadline:
        time.sleep(0.5)
        status = client.get_job_status(job_id)
    return str(status.value)


async def _print_logs(client, job_id: str) -> None:
    async for lines in client.tail_job_logs(job_id):
        print(lines, end="", flush=True)
