"""MLflow pyfunc wrapper, logged as code (no pickled Python object in the model).

``mlflow.pyfunc.load_model(uri).predict(data)`` returns the predicted labels (classification)
or values (regression). ``data`` is what a user has at hand:

- a pandas DataFrame with a numeric column per feature, named as in training: any int or float
  dtype (``pd.read_csv`` / ``pd.read_parquet`` of the training file as is); other columns, such as
  the label, are ignored and the order of the columns does not matter;
- a numpy array or a list of rows, one number per feature in training order (one row may be
  given flat);
- a mapping of feature name to values, or a list of such mappings (records).

The signature declares one ``double`` column per feature (``tracking.model_signature``). MLflow's
own check of such a signature refuses int64 columns and any array or list of rows, so the model
is logged with MLflow's flag for models that check their own input, and :func:`features_from`
does the check: a missing column, a wrong width, a non-numeric column or a NaN raises an
``MlflowException`` (HTTP 400 under ``mlflow models serve``) that names it.

The weights and model config sit in the model's artifacts as ``final_model/weights.safetensors``
and ``final_model/model_config.json``. Only ``trainers/`` is shipped with the model as code, so
this file imports nothing else from the project.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.pyfunc import PythonModel

from trainers.checkpoint import FINAL_MODEL_DIR
from trainers.models import load_model, predict


def _invalid(message: str) -> MlflowException:
    return MlflowException.invalid_parameter_value(f"Invalid model input: {message}")


def features_from(model_input: Any, feature_names: list[str]) -> np.ndarray:
    """The features of ``model_input`` as float32 [rows, len(feature_names)], in training order."""
    width = len(feature_names)
    if isinstance(model_input, Mapping):  # column -> values, or one record of scalars
        single = all(np.isscalar(v) for v in model_input.values())
        model_input = pd.DataFrame([model_input] if single else model_input)
    elif isinstance(model_input, list) and model_input and isinstance(model_input[0], Mapping):
        model_input = pd.DataFrame(model_input)

    if isinstance(model_input, pd.DataFrame):
        missing = [name for name in feature_names if name not in model_input.columns]
        if missing:
            raise _invalid(
                f"missing feature column(s) {missing}; the model takes the {width} columns "
                f"{feature_names} (in any order; other columns are ignored)"
            )
        frame = model_input[feature_names].infer_objects()
        non_numeric = [
            f"{name} ({frame[name].dtype})"
            for name in feature_names
            if not pd.api.types.is_numeric_dtype(frame[name])
        ]
        if non_numeric:
            raise _invalid(f"non-numeric feature column(s): {', '.join(non_numeric)}")
        features = frame.to_numpy(dtype=np.float64)
    else:
        try:
            features = np.asarray(model_input, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise _invalid(
                f"expected a DataFrame, a numpy array or a list of rows of {width} numbers "
                f"({type(model_input).__name__} given): {exc}"
            ) from None
        shape = features.shape
        if features.ndim == 1:
            features = features.reshape(1, -1)
        if features.ndim != 2 or features.shape[1] != width:
            raise _invalid(
                f"expected rows of {width} features {feature_names}, got an array of shape {shape}"
            )
    bad = ~np.isfinite(features)
    if bad.any():
        columns = [feature_names[i] for i in np.flatnonzero(bad.any(axis=0))]
        raise _invalid(f"NaN or infinite values in {int(bad.sum())} cell(s), column(s) {columns}")
    return features.astype(np.float32)


class RedblueModel(PythonModel):
    """Loads weights + config with ``trainers.models.load_model`` and predicts."""

    def load_context(self, context) -> None:
        self.model, self.spec = load_model(Path(context.artifacts[FINAL_MODEL_DIR]))

    # The DataFrame hint is what MLflow reads as "no type-hint validation" (without a hint it warns
    # on every load); arrays, lists and mappings are taken as well, see features_from.
    def predict(self, context, model_input: pd.DataFrame, params=None) -> np.ndarray:
        features = features_from(model_input, self.spec.feature_names)
        labels, _ = predict(self.model, self.spec, features)
        return labels


mlflow.models.set_model(RedblueModel())
