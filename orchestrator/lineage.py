"""What a run trained on, as MLflow's dataset lineage (``log_inputs``: the Datasets column of
the runs table, and the run page's inputs): where the data came from, a digest of what was read,
its input columns, and the split's sizes as the input's tags."""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import numpy as np
from mlflow.data.dataset_source import DatasetSource
from mlflow.data.meta_dataset import MetaDataset
from mlflow.entities import DatasetInput, InputTag
from mlflow.types.utils import _infer_schema

from orchestrator.streaming.plan import describe
from orchestrator.tracking import TrackedRun
from trainers.data.sources import BUNDLED, is_uri
from trainers.loop.plan import RunPlan

CONTEXT_TAG = "mlflow.data.context"  # MLflow's tag for how a run used a dataset


def training_dataset(source: str, plan: RunPlan) -> MetaDataset:
    """The data of ``plan``, read from ``source`` (``data.source``)."""
    with warnings.catch_warnings():  # integer columns: a gap would make them floats
        warnings.simplefilter("ignore", UserWarning)
        schema = _infer_schema(plan.model_sample())
    name = source if source in BUNDLED else Path(source.rstrip("/")).name or source
    source_of = dataset_source(source)
    return MetaDataset(source_of, name=name, digest=digest(plan), schema=schema)  # type: ignore[abstract]


def dataset_source(source: str) -> DatasetSource:
    """A bundled set by its name (code that ships it), a path or URI as MLflow resolves it."""
    from mlflow.data.code_dataset_source import CodeDatasetSource
    from mlflow.data.dataset_source_registry import resolve_dataset_source

    if source in BUNDLED:
        return CodeDatasetSource({"redblue.bundled": source})
    where = source if is_uri(source) else Path(source).expanduser().resolve().as_uri()
    with warnings.catch_warnings():  # "can be interpreted in multiple ways"
        warnings.simplefilter("ignore", UserWarning)
        try:
            return resolve_dataset_source(where)
        except Exception:  # a scheme MLflow has no source type for
            return CodeDatasetSource({"uri": where})


DIGEST_ROWS = 100_000  # rows hashed at most, evenly spaced (MLflow's own digests sample too)


def digest(plan: RunPlan) -> str:
    """What was read: a hash of the encoded samples and labels in memory (their shapes, and up
    to ``DIGEST_ROWS`` rows evenly spaced); for a streamed table, of its parts' names, sizes and
    times and its split (the stream's fingerprint)."""
    if plan.stream is not None:
        return plan.stream.fingerprint[:16]
    hashed = hashlib.sha256()
    for array in (plan.dataset.features, plan.dataset.labels):
        step = max(1, len(array) // DIGEST_ROWS)
        hashed.update(repr(array.shape).encode())
        hashed.update(np.ascontiguousarray(array[::step]).tobytes())
    return hashed.hexdigest()[:16]


def log_training_input(run: TrackedRun, source: str, plan: RunPlan) -> None:
    """Record ``plan``'s data on ``run`` as its training input, with the split's sizes."""
    if plan.stream is not None:
        sizes = dict(plan.stream.sizes)
    else:
        split = plan.split
        sizes = {"test": len(split.test), "val": len(split.val)}
        sizes |= {"red": len(split.red), "blue": len(split.blue)}
    tags = [InputTag(CONTEXT_TAG, "training")]
    tags += [InputTag(f"redblue.rows.{part}", str(rows)) for part, rows in sizes.items()]
    entity = training_dataset(source, plan)._to_mlflow_entity()
    run.client.log_inputs(run.run_id, datasets=[DatasetInput(entity, tags)])


def record_data(run: TrackedRun, source: str, plan: RunPlan) -> None:
    """How the data was read (the task's report, its artifacts) and the lineage, on ``run``."""
    run.log_data(describe(plan))
    log_training_input(run, source, plan)
