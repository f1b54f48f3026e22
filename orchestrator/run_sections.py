"""The run's own config sections: the worker group (``scaling``), checkpoints and the run's
failure handling and storage (``run``)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, WithJsonSchema, field_validator

from orchestrator import storage
from trainers.config import Section

AUTO = 0  # scaling.num_workers and cpus_per_worker as held until chosen ("auto" in a config)


def _auto_schema(most: float | None) -> WithJsonSchema:
    """The JSON Schema of a number above 0 (at most ``most``) or ``auto``."""
    number: dict = {"type": "number", "exclusiveMinimum": 0}
    if most is not None:
        number = {"type": "integer", "minimum": 1, "maximum": most}
    return WithJsonSchema({"anyOf": [number, {"const": "auto"}], "default": "auto"})


class ScalingSection(Section):
    # auto is held as AUTO until worker_shape.settle chooses, as the config validates.

    num_workers: Annotated[int, _auto_schema(1024)] = Field(
        "auto",  # type: ignore[assignment]
        validate_default=True,
        le=1024,
        description="Ray Train workers (data parallel), or auto: one a node (a GPU with "
        "use_gpu), with all its CPUs; for a sweep's or compare's trials, one a trial (the choice "
        "is printed).",
    )
    use_gpu: bool = Field(False, description="Give each worker one GPU (NCCL) instead of CPUs.")
    cpus_per_worker: Annotated[float, _auto_schema(None)] = Field(
        "auto",  # type: ignore[assignment]
        validate_default=True,
        description="CPUs reserved per worker (also its torch thread count), or auto: chosen with "
        "num_workers auto, else 1.",
    )

    @field_validator("num_workers", "cpus_per_worker", mode="before")
    @classmethod
    def _number_or_auto(cls, value: object) -> object:
        if value == "auto":
            return AUTO
        if isinstance(value, int | float) and not isinstance(value, bool) and value <= 0:
            raise ValueError("should be above 0, or auto")
        return value


class CheckpointSection(Section):
    every_rounds: int = Field(5, ge=1, description="Checkpoint after every N rounds.")
    keep: int = Field(2, ge=1, description="Checkpoints kept per run (the newest).")
    select: Literal["best", "last"] = Field(
        "best",
        description="The model a run keeps (tested, logged, registered, served): the fused model "
        "of the evaluation with the lowest val_loss (best), or the one at the end (last).",
    )


# The file systems pyarrow (and so Ray Train) opens from a URI.
STORAGE_SCHEMES = ("file", "s3", "gs", "gcs", "hdfs", "viewfs", "abfs", "abfss")


class RunSection(Section):
    max_failures: int = Field(
        0,
        ge=0,
        description="Worker-group restarts from the latest checkpoint after a failure (a worker "
        "or a node lost); also how many times a worker group may fail to find its resources.",
    )
    start_timeout_s: float = Field(
        120.0,
        gt=0,
        description="How long a worker group waits for its CPUs/GPUs (after a lost node, for a "
        "replacement) before that start counts as a failure.",
    )
    storage_path: str = Field(
        "ray_results",
        description="Where Ray Train stores checkpoints: a folder (a relative one is taken from "
        "the working directory, ~/.redblue inside a Ray job) or a URI (s3://, gs://, file://, "
        "...). On a multi-node cluster, storage every node reaches (NFS, S3).",
    )

    @field_validator("storage_path")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        scheme = storage.scheme(value)
        if scheme and scheme not in STORAGE_SCHEMES:
            raise ValueError(
                f"unknown storage scheme {scheme}://; use a folder or one of "
                + ", ".join(f"{known}://" for known in STORAGE_SCHEMES)
            )
        return value
