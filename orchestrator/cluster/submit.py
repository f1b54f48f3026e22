"""``redblue submit -- train|sweep|compare CONFIG ...``: a command on a cluster, as a Ray job.

The working directory is uploaded without what a job never needs (``.git``, ``.venv``, MLflow and
Ray output, and everything ``.gitignore`` excludes); a package Ray would refuse is refused here,
before uploading, with its biggest files named. The job gets ``MLFLOW_TRACKING_URI``, its logs
are followed, and the exit code is the job's outcome.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Callable
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
EXIT_CODES = {"SUCCEEDED": EXIT_OK, "FAILED": EXIT_FAILED, "STOPPED": EXIT_INTERRUPTED}


class SubmitError(ValueError):
    """The job cannot be submitted as asked; the message says why."""


@dataclass(frozen=True)
class Package:
    root: Path
    files: list[tuple[Path, int]]  # (relative path, bytes)

    @property
    def size(self) -> int:
        return sum(size for _, size in self.files)

    def biggest(self, count: int = 5) -> list[tuple[Path, int]]:
        return sorted(self.files, key=lambda item: -item[1])[:count]


def package(root: Path) -> Package:
    """The files a job's working directory will hold: git's view of the folder (tracked and
    untracked, minus ignored), without ``ALWAYS_EXCLUDED``."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=root,
        capture_output=True,
        text=True,
    )
    if listed.returncode == 0:
        names = [Path(name) for name in listed.stdout.split("\0") if name]
    else:  # not a git checkout: every file
        names = [p.relative_to(root) for p in root.rglob("*") if p.is_file()]
    files = [
        (name, (root / name).stat().st_size)
        for name in names
        if not set(name.parts) & set(ALWAYS_EXCLUDED) and (root / name).is_file()
    ]
    return Package(root, files)


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
    return {"working_dir": str(found.root), "excludes": ALWAYS_EXCLUDED, "env_vars": env_vars}


def submission_problem(
    target: str | None, command: list[str], warn: Callable[[str], None]
) -> str | None:
    """Why ``redblue submit`` refuses ``command`` before anything is uploaded, or None: no
    cluster, not ``train|sweep|compare CONFIG ...``, a config that does not load, or a config
    outside the uploaded folder (the working directory)."""
    from orchestrator.config import ConfigError, load_config

    if not target:
        return "no cluster: pass --address or set RAY_ADDRESS (e.g. from redblue cluster up)"
    if len(command) < 2 or command[0] not in ("train", "sweep", "compare"):
        return (
            "submit runs `train CONFIG ...`, `sweep CONFIG ...` or `compare CONFIG ...` (after --)"
        )
    pairs = zip(command[2:], command[3:], strict=False)
    sets = [arg for flag, arg in pairs if flag in ("--set", "-s")]
    try:
        load_config(Path(command[1]), sets, command[0] == "sweep", warn=warn)
    except ConfigError as exc:
        return str(exc)
    if not Path(command[1]).resolve().is_relative_to(Path.cwd()):
        return f"{command[1]} must be inside this folder (uploaded as the job's)"
    return None


def submit(address: str, entrypoint: list[str], root: Path, follow: bool, log) -> int:
    """Submit ``redblue <entrypoint>``; follow its logs when asked; return the exit code."""
    import shlex

    from ray.job_submission import JobSubmissionClient

    found = package(root)
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
