"""Input schemas: what a family's model takes, and the one check of it that pyfunc, serving and
the CLI share. No torch here (the serving API imports it); pandas is imported where used.

A tabular model takes rows of its raw feature columns (``trainers.data.preprocessing`` turns them
into numbers). ``TabularInput.rows`` accepts what a user has at hand:

- a pandas DataFrame with a column per feature, named as in training (``pd.read_csv`` /
  ``pd.read_parquet`` of the training file as is): numbers, strings for categories, NaN or None
  where the column allows a missing value; other columns, such as the label, are ignored and the
  order of the columns does not matter;
- a mapping of feature name to values, or a list of such mappings (records);
- for a model of number columns only, a numpy array or a list of rows, one number per feature in
  training order (one row may be given flat).

A missing column, a wrong width, a value of the wrong type or a refused gap raises ``InputError``
naming it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from trainers.errors import InputError

if TYPE_CHECKING:
    from trainers.data.preprocessing import Preprocessing


@dataclass(frozen=True)
class TabularInput:
    """Rows of the raw feature columns, encoded by ``preprocessing``."""

    preprocessing: Preprocessing

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(self.preprocessing.names)

    @property
    def width(self) -> int:
        return len(self.feature_names)

    def rows(self, model_input: Any) -> np.ndarray:
        """``model_input`` as the model's float32 matrix."""
        import pandas as pd

        if isinstance(model_input, Mapping):  # column -> values, or one record of scalars
            single = all(np.isscalar(v) or v is None for v in model_input.values())
            model_input = pd.DataFrame([model_input] if single else model_input)
        elif isinstance(model_input, list) and model_input and isinstance(model_input[0], Mapping):
            model_input = pd.DataFrame(model_input)
        if not isinstance(model_input, pd.DataFrame):
            model_input = pd.DataFrame(self._matrix(model_input), columns=list(self.feature_names))
        return self.preprocessing.transform(model_input)

    def _matrix(self, model_input: Any) -> np.ndarray:
        names = list(self.feature_names)
        if not self.preprocessing.all_numeric:
            raise InputError(
                "this model has category or boolean columns: give a DataFrame or records naming "
                f"the columns {names}"
            )
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
        return features

    def example(self, summary: dict, count: int) -> list[dict[str, Any]]:
        """``count`` copies of a typical record: a number's median bin edge from the training
        summary (``trainers.data.drift.summarize``), a category's most frequent value."""
        record: dict[str, Any] = {}
        for column in self.preprocessing.columns:
            if column.type == "category":
                record[column.name] = column.categories[0] if column.categories else None
            elif column.type == "boolean":
                record[column.name] = True
            else:
                edges = (summary.get(column.name) or {}).get("edges") or [column.fill or 0.0]
                record[column.name] = float(edges[len(edges) // 2])
        return [dict(record) for _ in range(count)]
