"""Input schemas: what a family's model takes, and the one check of it that pyfunc, serving and
the CLI share. No torch here (the serving API imports it); pandas is imported where used.

A tabular model takes rows of numbers, one per feature in training order. ``TabularInput.rows``
accepts what a user has at hand:

- a pandas DataFrame with a numeric column per feature, named as in training: any int or float
  dtype (``pd.read_csv`` / ``pd.read_parquet`` of the training file as is); other columns, such as
  the label, are ignored and the order of the columns does not matter;
- a numpy array or a list of rows, one number per feature in training order (one row may be
  given flat);
- a mapping of feature name to values, or a list of such mappings (records).

A missing column, a wrong width, a non-numeric column or a NaN raises ``InputError`` naming it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np


class InputError(ValueError):
    """The input does not fit the model's schema; the message names the problem."""


@dataclass(frozen=True)
class TabularInput:
    """Rows of ``len(feature_names)`` finite numbers, in this order."""

    feature_names: tuple[str, ...]

    @property
    def width(self) -> int:
        return len(self.feature_names)

    def rows(self, model_input: Any) -> np.ndarray:
        """``model_input`` as float32 [rows, width], in training order."""
        import pandas as pd

        names = list(self.feature_names)
        if isinstance(model_input, Mapping):  # column -> values, or one record of scalars
            single = all(np.isscalar(v) for v in model_input.values())
            model_input = pd.DataFrame([model_input] if single else model_input)
        elif isinstance(model_input, list) and model_input and isinstance(model_input[0], Mapping):
            model_input = pd.DataFrame(model_input)

        if isinstance(model_input, pd.DataFrame):
            features = self._from_frame(model_input, names)
        else:
            try:
                features = np.asarray(model_input, dtype=np.float64)
            except (TypeError, ValueError) as exc:
                raise InputError(
                    f"expected a DataFrame, a numpy array or a list of rows of {self.width} "
                    f"numbers ({type(model_input).__name__} given): {exc}"
                ) from None
            shape = features.shape
            if features.ndim == 1:
                features = features.reshape(1, -1)
            if features.ndim != 2 or features.shape[1] != self.width:
                raise InputError(
                    f"expected rows of {self.width} features {names}, got an array of shape {shape}"
                )
        bad = ~np.isfinite(features)
        if bad.any():
            columns = [names[i] for i in np.flatnonzero(bad.any(axis=0))]
            raise InputError(
                f"NaN or infinite values in {int(bad.sum())} cell(s), column(s) {columns}"
            )
        return features.astype(np.float32)

    def _from_frame(self, frame: Any, names: list[str]) -> np.ndarray:
        import pandas as pd

        missing = [name for name in names if name not in frame.columns]
        if missing:
            raise InputError(
                f"missing feature column(s) {missing}; the model takes the {self.width} columns "
                f"{names} (in any order; other columns are ignored)"
            )
        selected = frame[names].infer_objects()
        non_numeric = [
            f"{name} ({selected[name].dtype})"
            for name in names
            if not pd.api.types.is_numeric_dtype(selected[name])
        ]
        if non_numeric:
            raise InputError(f"non-numeric feature column(s): {', '.join(non_numeric)}")
        return selected.to_numpy(dtype=np.float64)


def typical_rows(summary: dict, feature_names: list[str], count: int) -> np.ndarray:
    """``count`` copies of a typical row: each feature's median bin edge from the training
    summary (``trainers.drift.summarize``), 0 where the summary has none."""
    row = []
    for name in feature_names:
        edges = (summary.get(name) or {}).get("edges") or [0.0]
        row.append(float(edges[len(edges) // 2]))
    return np.repeat(np.asarray(row, dtype=np.float32)[None, :], count, axis=0)
