"""The fixed classifier a generative model is measured with (its *judge*), and the layout of the
rows it generates. Both are fitted on the training pool P' at plan time and stored with the model
(``ModelSpec.preprocessing["generation"]``), as plain JSON: nothing pickled.

The judge is scikit-learn's ``MLPClassifier`` with one hidden layer of ``JUDGE_WIDTH`` ReLU units,
trained on P''s encoded rows, standardized (at most ``JUDGE_ROWS`` of them, a seeded sample). Its
hidden activations are the feature space of the Fréchet distance (``test_fd``), as an Inception
network's are for images: the figure is comparable only between models measured by the same
judge, that is within Redblue, on the same data and split. Its predictions on generated rows give
``test_label_accuracy`` and ``test_classes_covered``.

No torch here (the driver plans before torch loads).
"""

from __future__ import annotations

import base64
import warnings
from dataclasses import asdict, dataclass

import numpy as np

from trainers.data.preprocessing import Preprocessing

JUDGE_WIDTH = 32
JUDGE_ROWS = 20_000
JUDGE_EPOCHS = 300
GENERATION = "generation"  # its entry in the stored preprocessing


def _packed(array: np.ndarray) -> dict:
    values = np.ascontiguousarray(array, dtype="<f4")
    return {"shape": list(values.shape), "float32": base64.b64encode(values.tobytes()).decode()}


def unpacked(packed: dict) -> np.ndarray:
    """An array stored by the judge's JSON (little-endian float32, base64)."""
    raw = base64.b64decode(packed["float32"])
    return np.frombuffer(raw, dtype="<f4").reshape(packed["shape"]).copy()


@dataclass(frozen=True)
class Generation:
    """The generation entry of a model's stored preprocessing."""

    priors: list[float]  # each class's share of P'
    label: str  # the label column's name (generated rows carry it)
    whole: list[str]  # the number columns whose every value on P' is a whole number
    judge: dict  # weights and standardization, packed

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Generation:
        return cls(
            list(data["priors"]), str(data["label"]), list(data["whole"]), dict(data["judge"])
        )


def blocks(fitted: Preprocessing) -> list[tuple[int, int]]:
    """The (start, stop) of every category's one-hot block in the dense block."""
    spans, start = [], 0
    for column in fitted.columns:
        width = len(column.dense_names)
        if column.type == "category":
            spans.append((start, start + width))
        start += width
    return spans


def fit_generation(
    features: np.ndarray, labels: np.ndarray, classes: int, label: str, whole: list[str], seed: int
) -> Generation:
    """The judge and the class priors, from P''s encoded rows."""
    from sklearn.neural_network import MLPClassifier

    rows = np.random.default_rng([seed, 11]).permutation(len(features))[:JUDGE_ROWS]
    sample, targets = features[rows].astype(np.float64), labels[rows]
    mean, std = sample.mean(axis=0), sample.std(axis=0)
    std = np.where(std > 1e-8, std, 1.0)
    judge = MLPClassifier(
        hidden_layer_sizes=(JUDGE_WIDTH,), max_iter=JUDGE_EPOCHS, random_state=seed
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning: a fixed budget is the point
        judge.fit((sample - mean) / std, targets)
    # Classes absent from the sample still get an output (a column that never wins).
    out = np.full((JUDGE_WIDTH, classes), -1e4)
    out_bias = np.full(classes, -1e4)
    if judge.coefs_[1].shape[1] == 1:  # two classes: one logistic output, for the second
        out[:, judge.classes_[0]], out_bias[judge.classes_[0]] = 0.0, 0.0
        out[:, judge.classes_[1]] = judge.coefs_[1][:, 0]
        out_bias[judge.classes_[1]] = judge.intercepts_[1][0]
    else:
        out[:, judge.classes_] = judge.coefs_[1]
        out_bias[judge.classes_] = judge.intercepts_[1]
    counts = np.bincount(labels, minlength=classes).astype(np.float64)
    packed = {
        "mean": _packed(mean),
        "std": _packed(std),
        "hidden_weight": _packed(judge.coefs_[0].T),
        "hidden_bias": _packed(judge.intercepts_[0]),
        "out_weight": _packed(out.T),
        "out_bias": _packed(out_bias),
    }
    return Generation((counts / counts.sum()).tolist(), label, whole, packed)
