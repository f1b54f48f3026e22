"""Sequence data (``data.kind: sequence``): a long-format table, one row per (sequence, step),
turned into padded arrays for the recurrent families.

A sequence is the rows of one ``data.id``, ordered by ``data.time``; its label (``data.label``)
is constant within it. Every other column is a numeric feature. The arrays are
``[sequences, max_length, features + 1]``: the steps from the start, zeros after the end, and a
last channel that is 1 on a real step and 0 on padding, so a model (and every generic part of
the loop, which indexes samples) carries the lengths with the values.

T, V and the red and blue parts are split by sequence (``trainers.data.splits.make_split``,
stratified for classification). No torch here; pandas is imported where used.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from trainers.config import DataConfig
from trainers.data.splits import split_roles
from trainers.data.tables import encode_labels
from trainers.dataset import Dataset
from trainers.errors import DataError, InputError
from trainers.spec import ModelSpec

if TYPE_CHECKING:
    import pandas as pd

DIGITS_ROWS = "digits_rows"  # bundled: scikit-learn's digits as sequences of pixel rows


@dataclass(frozen=True)
class SequenceInput:
    """Sequences of steps of ``len(feature_names)`` finite numbers, at most ``max_length`` steps:
    what a recurrent model takes, and the one check of it for pyfunc, serving and batch work.

    ``rows`` takes a long-format DataFrame (the ``id`` and ``time`` columns and every feature
    column, as in training; other columns ignored) or a list of sequences, each a list of steps
    (lists of numbers); it returns the padded array with its mask channel.
    """

    feature_names: tuple[str, ...]
    id_column: str
    time_column: str
    max_length: int

    @classmethod
    def of_model(cls, spec: ModelSpec) -> SequenceInput:
        """The schema a sequence model stores (``ModelSpec.preprocessing["sequence"]``)."""
        entry = {**spec.preprocessing["sequence"], "feature_names": tuple(spec.feature_names)}
        return cls(**entry)

    @property
    def width(self) -> int:
        return len(self.feature_names)

    def rows(self, model_input: Any) -> np.ndarray:
        import pandas as pd

        if isinstance(model_input, Mapping):
            model_input = pd.DataFrame(model_input)
        if isinstance(model_input, pd.DataFrame):
            sequences = self.from_frame(model_input)
        else:
            sequences = [self._steps(index, s) for index, s in enumerate(model_input)]
        if not sequences:
            raise InputError("no sequences given")
        return pad(sequences, self.max_length)

    def raw_rows(self, dataset: Dataset, indices: np.ndarray) -> pd.DataFrame:
        """The long-format rows of the sequences at ``indices`` (``Dataset.raw``)."""
        assert dataset.raw is not None and dataset.ids is not None
        chosen = dataset.raw[self.id_column].isin(dataset.ids[indices])
        return dataset.raw[chosen].reset_index(drop=True)

    def sample_input(self, dataset: Dataset, indices: np.ndarray) -> pd.DataFrame:
        return self.raw_rows(dataset, indices)

    def from_frame(self, frame: pd.DataFrame) -> list[np.ndarray]:
        """The sequences of a long-format frame, in order of first appearance of their id."""
        needed = [self.id_column, self.time_column, *self.feature_names]
        missing = [name for name in needed if name not in frame.columns]
        if missing:
            raise InputError(
                f"missing column(s) {missing}; a sequence model takes the long-format columns "
                f"{needed} (other columns are ignored)"
            )
        duplicated = frame.duplicated([self.id_column, self.time_column])
        if duplicated.any():
            raise InputError(
                f"{int(duplicated.sum())} duplicate ({self.id_column}, {self.time_column}) pair(s)"
            )
        ordered = frame.sort_values([self.id_column, self.time_column], kind="stable")
        sequences = []
        for key, group in ordered.groupby(self.id_column, sort=False):
            sequences.append(self._steps(key, group[list(self.feature_names)]))
        return sequences

    def _steps(self, key: Any, steps: Any) -> np.ndarray:
        try:
            values = np.asarray(steps, dtype=np.float64)
        except (TypeError, ValueError):
            raise InputError(
                f"sequence {key!r}: every step must be a list of {self.width} numbers"
            ) from None
        if values.size == 0:
            raise InputError(f"sequence {key!r} is empty")
        if values.ndim != 2 or values.shape[1] != self.width:
            raise InputError(
                f"sequence {key!r}: steps of {self.width} features {list(self.feature_names)} "
                f"expected, got shape {values.shape}"
            )
        if len(values) > self.max_length:
            raise InputError(
                f"sequence {key!r} has {len(values)} steps; the model takes at most "
                f"{self.max_length} (data.max_length)"
            )
        if not np.isfinite(values).all():
            raise InputError(f"sequence {key!r}: NaN or infinite values")
        return values


def pad(sequences: list[np.ndarray], max_length: int) -> np.ndarray:
    """``[len(sequences), max_length, width + 1]`` float32: the steps, zeros after each end, and
    the mask channel (1 on a real step)."""
    width = sequences[0].shape[1]
    out = np.zeros((len(sequences), max_length, width + 1), dtype=np.float32)
    for index, steps in enumerate(sequences):
        out[index, : len(steps), :width] = steps
        out[index, : len(steps), width] = 1.0
    return out


def lengths(padded: np.ndarray) -> np.ndarray:
    return padded[..., -1].sum(axis=1).astype(np.int64)


BUNDLED_COLUMNS = {DIGITS_ROWS: {"id": "image", "time": "row", "label": "digit"}}


def prepare_sequences(frame: pd.DataFrame, cfg: DataConfig) -> Dataset:
    """Validate a long-format table and pad its sequences; every problem is one DataError."""
    import pandas as pd

    defaults = BUNDLED_COLUMNS.get(cfg.source, {})
    names = {key: getattr(cfg, key) or defaults.get(key) for key in ("id", "time", "label")}
    unset = [f"data.{key}" for key, name in names.items() if name is None]
    if unset:
        raise DataError(f"data.kind sequence needs {', '.join(unset)} (columns of {cfg.source})")
    id_column, time_column, label = str(names["id"]), str(names["time"]), str(names["label"])
    named = (id_column, time_column, label, *([cfg.split_column] if cfg.split_column else []))
    absent = [name for name in named if name not in frame.columns]
    if absent:
        raise DataError(
            f"column(s) {absent} not found in {cfg.source}; columns are: "
            + ", ".join(map(str, frame.columns))
        )
    features = [c for c in frame.columns if c not in (*named, *cfg.drop)]
    if not features:
        raise DataError(f"{cfg.source} has no feature columns besides id, time and label")
    text = [c for c in features if not pd.api.types.is_numeric_dtype(frame[c])]
    if text:
        raise DataError(f"sequence features must be numbers; not numeric: {', '.join(text)}")
    values = frame[features].to_numpy(dtype=np.float64)
    if not np.isfinite(values).all():
        bad = [c for c, b in zip(features, ~np.isfinite(values).all(axis=0), strict=True) if b]
        raise DataError(f"NaN or infinite values in {cfg.source}: column(s) {', '.join(bad)}")
    duplicated = frame.duplicated([id_column, time_column])
    if duplicated.any():
        raise DataError(
            f"{int(duplicated.sum())} duplicate ({id_column}, {time_column}) pair(s) in "
            f"{cfg.source}: a step appears twice"
        )
    ordered = frame.sort_values([id_column, time_column], kind="stable")
    labelled = ordered.groupby(id_column, sort=False)[label]
    unlabeled = labelled.transform(lambda s: s.isna().any()).astype(bool)
    dropped = int(ordered.loc[unlabeled, id_column].nunique())
    ordered = ordered[~unlabeled]
    changing = ordered.groupby(id_column, sort=False)[label].nunique()
    if (changing > 1).any():
        first = changing[changing > 1].index[0]
        raise DataError(
            f"the label {label!r} changes within {int((changing > 1).sum())} sequence(s) "
            f"(first: {id_column} {first!r}); a sequence has one label"
        )
    groups = [
        g[features].to_numpy(dtype=np.float64) for _, g in ordered.groupby(id_column, sort=False)
    ]
    if not groups:
        raise DataError(f"{cfg.source} holds no labelled sequence")
    longest = max(len(g) for g in groups)
    cap = cfg.max_length or longest
    over = sum(len(g) > cap for g in groups)
    if over and cfg.truncate == "refuse":
        raise DataError(
            f"{over} sequence(s) are longer than data.max_length ({cap} steps; the longest has "
            f"{longest}); raise it, or cut them with data.truncate: head or tail"
        )
    groups = [g[:cap] if cfg.truncate == "head" else g[-cap:] for g in groups]
    per_sequence = ordered.groupby(id_column, sort=False)[label].first()
    task, labels, classes = encode_labels(per_sequence, cfg.task, label)
    roles = sequence_roles(ordered, id_column, cfg.split_column) if cfg.split_column else None
    return Dataset(
        features=pad(groups, cap),
        labels=labels,
        task=task,
        feature_names=[str(c) for c in features],
        classes=classes,
        raw=ordered[[id_column, time_column, *features]].reset_index(drop=True),
        ids=per_sequence.index.to_numpy(),
        split_roles=roles,
        schema=SequenceInput(tuple(map(str, features)), id_column, time_column, cap),
        dropped_labels=dropped,
    )


def sequence_roles(ordered: pd.DataFrame, id_column: str, column: str) -> np.ndarray:
    """Each sequence's ``data.split_column`` value (train, val or test), the same on all of its
    rows; DataError naming a sequence whose rows disagree."""
    values = ordered[column].astype("string").str.strip().str.lower()
    changing = values.groupby(ordered[id_column], sort=False).nunique(dropna=False)
    if (changing > 1).any():
        first = changing[changing > 1].index[0]
        raise DataError(
            f"data.split_column {column!r} changes within {int((changing > 1).sum())} "
            f"sequence(s) (first: {id_column} {first!r}); a sequence is train, val or test whole"
        )
    first = ordered[column].groupby(ordered[id_column], sort=False).first()
    return split_roles(first, column, "sequence(s)")
