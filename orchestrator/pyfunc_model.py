"""MLflow pyfunc wrapper, logged as code (no pickled Python object in the model).

``mlflow.pyfunc.load_model(uri).predict(data)`` returns the predicted labels (classification)
or values (regression); a forecaster's a frame of ``step`` (1 to ``data.horizon``) and one column
per target, the forecast after the end of the series given (``trainers.data.series.SeriesInput``).
``data`` is what a user has at hand, as the model's input schema takes it
(``trainers.data.tabular_input.TabularInput`` for tables: a DataFrame read from the training
file as is, strings and gaps included, records, or for models of number columns an array or
list of rows); the model's stored preprocessing encodes it.

The signature declares one column per feature, typed as in training (``tracking.model_signature``).
MLflow's own check of a signature refuses int64 columns, gaps and any array or list of rows, so the
model is logged with MLflow's flag for models that check their own input, and the family's schema
does the check: a missing column, a wrong width, a value of the wrong type or a refused gap raises
an ``MlflowException`` (HTTP 400 under ``mlflow models serve``) that names it.

The weights and model config sit in the model's artifacts as ``final_model/weights.safetensors``
and ``final_model/model_config.json``; an exported model (``redblue export``) adds its ONNX graph,
``final_model/model.onnx``, and runs it in ONNX Runtime (torch is then not imported). Only
``trainers/`` is shipped with the model as code, so this file imports nothing else from the
project.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.pyfunc import PythonModel

from trainers.errors import InputError
from trainers.export.runtime import load_predictor
from trainers.spec import FINAL_MODEL_DIR, ModelSpec
from trainers.tasks import as_output, input_schema


def features_from(model_input: Any, spec: ModelSpec) -> np.ndarray:
    """``model_input`` checked by the model's input schema; a problem is an MlflowException."""
    try:
        return input_schema(spec).rows(model_input)
    except InputError as exc:
        raise MlflowException.invalid_parameter_value(f"Invalid model input: {exc}") from None


class RedblueModel(PythonModel):
    """Loads the saved model (``trainers.export.runtime.load_predictor``: weights + config in
    torch, or an exported model's graph in ONNX Runtime) and predicts."""

    def load_context(self, context) -> None:
        self.predict_rows, self.spec = load_predictor(Path(context.artifacts[FINAL_MODEL_DIR]))

    # The DataFrame hint is what MLflow reads as "no type-hint validation" (without a hint it warns
    # on every load); arrays, lists and mappings are taken as well, see features_from.
    def predict(self, context, model_input: pd.DataFrame, params=None) -> np.ndarray | pd.DataFrame:
        features = features_from(model_input, self.spec)
        labels, _ = self.predict_rows(features)
        return as_output(self.spec, labels)


mlflow.models.set_model(RedblueModel())
