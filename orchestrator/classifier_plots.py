"""A classifier's curves on the test part T, from its class probabilities: ROC and
precision-recall (one-vs-rest per class, at most ``MAX_CURVES`` classes drawn; the macro AUC and
average precision in the legend) and a reliability (calibration) diagram of the predicted class's
probability against how often it is right, in the bins whose gaps ``test_ece`` averages.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from trainers.families.summed_metrics import ECE_BINS

ROC_FILE = "roc_curve.png"
PRECISION_RECALL_FILE = "precision_recall_curve.png"
CALIBRATION_FILE = "calibration.png"
MAX_CURVES = 10  # classes drawn one by one; the macro average always


def classifier_figures(
    labels: np.ndarray, probabilities: np.ndarray, classes: list
) -> dict[str, Any]:
    """The three figures by artifact name; ``labels`` are class indices into ``classes``."""
    import matplotlib

    matplotlib.use("Agg")
    labels = np.asarray(labels, dtype=np.int64)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    return {
        ROC_FILE: _one_vs_rest(labels, probabilities, classes, roc=True),
        PRECISION_RECALL_FILE: _one_vs_rest(labels, probabilities, classes, roc=False),
        CALIBRATION_FILE: _reliability(labels, probabilities),
    }


def _drawn_classes(labels: np.ndarray, count: int) -> list[int]:
    """The classes with a curve: both outcomes present in T; the positive class alone when
    binary; the first ``MAX_CURVES`` otherwise."""
    present = [c for c in range(count) if 0 < np.sum(labels == c) < len(labels)]
    return present[-1:] if count == 2 else present[:MAX_CURVES]


def _one_vs_rest(labels: np.ndarray, probabilities: np.ndarray, classes: list, roc: bool):
    import matplotlib.pyplot as plt
    from sklearn.metrics import (
        average_precision_score,
        precision_recall_curve,
        roc_auc_score,
        roc_curve,
    )

    figure, axis = plt.subplots(figsize=(5.5, 4.5))
    drawn = _drawn_classes(labels, probabilities.shape[1])
    scores = []
    for index, cls in enumerate(drawn):
        truth, score = labels == cls, probabilities[:, cls]
        if roc:
            x, y, _ = roc_curve(truth, score)
            value = roc_auc_score(truth, score)
        else:
            y, x, _ = precision_recall_curve(truth, score)
            value = average_precision_score(truth, score)
        scores.append(value)
        axis.plot(x, y, linewidth=1.2, color=plt.cm.tab10(index % 10), label=f"{classes[cls]}")
    name = "AUC" if roc else "average precision"
    macro = f"macro {name} {np.mean(scores):.3f}" if scores else "no class with both outcomes"
    if roc:
        axis.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
        axis.set(xlabel="false positive rate", ylabel="true positive rate")
    else:
        axis.set(xlabel="recall", ylabel="precision")
    curves = "ROC" if roc else "precision-recall"
    axis.set(xlim=(0, 1), ylim=(0, 1.02), title=f"{curves} on T, one vs rest ({macro})")
    axis.title.set_fontsize(9)
    if drawn:
        axis.legend(fontsize=7, ncol=2 if len(drawn) > 5 else 1, loc="lower right")
    figure.tight_layout()
    return figure


def reliability_bins(
    labels: np.ndarray, probabilities: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """The predicted class's probability in ``ECE_BINS`` equal bins, as ``test_ece`` bins it:
    each bin's samples, mean probability and accuracy (bins with samples), and the expected
    calibration error (the sample-weighted gap between the two)."""
    confidence = probabilities.max(axis=1)
    right = probabilities.argmax(axis=1) == labels
    which = np.minimum((confidence * ECE_BINS).astype(int), ECE_BINS - 1)
    counts = np.bincount(which, minlength=ECE_BINS)
    filled = counts > 0
    mean_confidence = np.bincount(which, confidence, ECE_BINS)[filled] / counts[filled]
    accuracy = np.bincount(which, right, ECE_BINS)[filled] / counts[filled]
    error = float(np.sum(counts[filled] * np.abs(accuracy - mean_confidence)) / len(labels))
    return counts, mean_confidence, accuracy, error


def _reliability(labels: np.ndarray, probabilities: np.ndarray):
    """Each bin's mean probability against its share of right predictions (the diagonal is
    perfect calibration), and how many samples each bin holds."""
    import matplotlib.pyplot as plt

    counts, mean_confidence, accuracy, error = reliability_bins(labels, probabilities)
    figure, (top, bottom) = plt.subplots(
        2, 1, figsize=(5, 5.5), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    top.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1, label="calibrated")
    top.plot(mean_confidence, accuracy, marker="o", color="black", label="model")
    top.set(ylabel="accuracy", ylim=(0, 1.02), title=f"reliability on T (ECE {error:.3f})")
    top.legend(fontsize=8, loc="upper left")
    edges = np.arange(ECE_BINS) / ECE_BINS
    bottom.bar(edges, counts, width=1.0 / ECE_BINS, align="edge", color="grey")
    bottom.set(xlabel="probability of the predicted class", ylabel="samples", xlim=(0, 1))
    figure.tight_layout()
    return figure
