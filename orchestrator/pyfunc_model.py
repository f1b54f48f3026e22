"""MLflow pyfunc wrapper, logged as code (no pickled Python object in the model).

``mlflow.pyfunc.load_model(uri).predict(frame)`` returns the predicted labels (classification)
or values (regression). The weights and model config sit in the model's artifacts as
``final_model/weights.safetensors`` and ``final_model/model_config.json``.
"""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel

from trainers.checkpoint import FINAL_MODEL_DIR
from trainers.models import load_model, predict


class RedblueModel(PythonModel):
    """Loads weights + config with ``trainers.models.load_model`` and predicts."""

    def load_context(self, context) -> None:
        self.model, self.spec = load_model(Path(context.artifacts[FINAL_MODEL_DIR]))

    def predict(self, context, model_input: pd.DataFrame, params=None) -> np.ndarray:
        if isinstance(model_input, pd.DataFrame):
            names = self.spec.feature_names
            frame = model_input[names] if set(names) <= set(model_input.columns) else model_input
            features = frame.to_numpy(dtype=np.float32)
        else:
            features = np.asarray(model_input, dtype=np.float32)
        if features.ndim != 2 or features.shape[1] != self.spec.in_features:
            raise ValueError(
                f"expected {self.spec.in_features} features per row, got shape {features.shape}"
            )
        labels, _ = predict(self.model, self.spec, features)
        return labels


mlflow.models.set_model(RedblueModel())
