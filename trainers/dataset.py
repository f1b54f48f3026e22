"""The shared types of the compute layer, at the bottom of it: a ``Dataset`` ready for training,
its ``Split`` into the parts of ``docs/red-blue.md`` (test T, validation V, red R, blue
B), and the ``InputSchema`` protocol of what a model takes. Every data kind (``trainers.data``)
makes these; the loop, the families and the tasks read them. No torch, no pandas at import.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:
    import pandas as pd


class InputSchema(Protocol):
    """What a model takes (``trainers.data.tabular_input.TabularInput``,
    ``trainers.data.sequences.SequenceInput``, ``trainers.data.series.SeriesInput``): the one
    check of an input that pyfunc, serving, batch prediction and the CLI share."""

    @property
    def feature_names(self) -> tuple[str, ...]: ...

    @property
    def width(self) -> int: ...

    def rows(self, model_input: Any) -> np.ndarray:
        """``model_input`` as the model's float32 array; InputError names a problem."""
        ...


@runtime_checkable
class RawSamples(Protocol):
    """How a data kind whose samples are not single rows of ``Dataset.raw`` (sequences,
    windows of a series) picks the raw inputs of some samples."""

    def raw_rows(self, dataset: Dataset, indices: np.ndarray) -> Any:
        """The raw inputs at ``indices``, as the model's ``InputSchema.rows`` takes them."""
        ...

    def sample_input(self, dataset: Dataset, indices: np.ndarray) -> pd.DataFrame:
        """A few raw inputs as a user gives them (a logged model's signature and example)."""
        ...


@dataclass(frozen=True)
class Dataset:
    """Features and labels ready for training; classification labels are class indices."""

    features: np.ndarray  # float32 [n, ...]: the encoded samples
    labels: np.ndarray  # int64 [n] (classification), float32 [n] or [n, horizon, targets]
    task: str  # classification, regression or forecast
    feature_names: list[str]  # the raw feature columns, in order
    classes: list  # original class labels, index = class id; empty otherwise
    # Tables: the fitted column transformation (``trainers.data.preprocessing.Preprocessing``).
    preprocessing: Any = None
    raw: pd.DataFrame | None = None  # the raw table as read (the driver's; not for workers)
    dropped_labels: int = 0
    dropped_rows: int = 0
    # Sequences: each sample's sequence id.
    ids: np.ndarray | None = None
    # Sequences: each sample's train, val or test (``data.split_column``).
    split_roles: np.ndarray | None = None
    # Tables: each sample's position among the source file's data rows (0-based, header
    # excluded; rows without a label or dropped by a rule are skipped); None: the same as its
    # index.
    row_numbers: np.ndarray | None = None
    # Sequences and series: the input schema, which also picks a sample's raw rows.
    schema: Any = None

    def raw_rows(self, indices: np.ndarray) -> pd.DataFrame | np.ndarray:
        """The raw inputs at ``indices`` as the model's input schema takes them (on the driver,
        which holds the raw table)."""
        import pandas as pd

        if isinstance(self.schema, RawSamples):
            return self.schema.raw_rows(self, indices)
        if self.raw is not None:
            return self.raw.iloc[indices].reset_index(drop=True)
        return pd.DataFrame(self.features[indices], columns=self.feature_names)

    def sample_input(self, indices: np.ndarray) -> pd.DataFrame:
        """A few raw inputs as a user gives them, for a logged model's signature and example."""
        if isinstance(self.schema, RawSamples):
            return self.schema.sample_input(self, indices)
        rows = self.raw_rows(indices)
        assert not isinstance(rows, np.ndarray)
        return rows

    def sample_names(self, indices: np.ndarray) -> tuple[str, np.ndarray]:
        """How a user finds samples in their data: ("sequence", the sequence ids) or ("row",
        the positions among the source's data rows)."""
        if self.ids is not None:
            return "sequence", self.ids[indices]
        rows = self.row_numbers if self.row_numbers is not None else np.arange(len(self.labels))
        return "row", rows[indices]

    @property
    def num_outputs(self) -> int:
        if self.task == "forecast":
            return int(np.prod(self.labels.shape[1:]))
        return len(self.classes) if self.task == "classification" else 1


@dataclass(frozen=True)
class Split:
    """Index arrays into a Dataset: test T, validation V, red R, blue B (train = R ∪ B)."""

    test: np.ndarray
    val: np.ndarray
    red: np.ndarray
    blue: np.ndarray

    @property
    def train(self) -> np.ndarray:
        """P' = R ∪ B, sorted (computed at each call: O(n log n))."""
        return np.sort(np.concatenate([self.red, self.blue]))

    def fingerprint(self) -> str:
        """A hash of every index array, stored in checkpoints to refuse a resume on other data."""
        digest = hashlib.sha256()
        for part in (self.test, self.val, self.red, self.blue):
            digest.update(np.ascontiguousarray(part, dtype=np.int64).tobytes())
            digest.update(b"|")
        return digest.hexdigest()[:16]
