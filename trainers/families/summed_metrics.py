"""Metrics from additive sums. An objective's ``summary`` of a batch (its outputs and targets) is
a dict of float64 arrays that add up over batches and workers; its ``metrics_of`` turns the
total into the metrics. A streamed part is so scored batch by batch, holding no row
(``trainers.loop.streamed``), and a part in memory is scored by the same arithmetic in one batch.

Every summary holds ``loss_sum`` and ``loss_count`` (the objective's loss is their ratio). The
classification ROC-AUC is read from histograms of each class's score on a fine logit grid (a
positive and a negative in the same cell count as a tie): within 1e-3 of the exact figure.
Pure numpy and torch; no Ray.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

Sums = dict[str, Any]  # float64 scalars and arrays

ECE_BINS = 15
AUC_LOGIT = 16.0  # the AUC histograms span logits in [-AUC_LOGIT, AUC_LOGIT]
AUC_CELLS = 2**21  # the most histogram cells over all classes
AUC_BINS = 8192  # per class, at most


def added(total: Sums | None, more: Sums) -> Sums:
    """``total`` plus ``more``, key by key (``more`` when there is no total yet)."""
    if total is None:
        return {name: np.array(value, dtype=np.float64) for name, value in more.items()}
    return {name: total[name] + more[name] for name in total}


def classification_summary(logits: torch.Tensor, targets: torch.Tensor) -> Sums:
    """Cross-entropy, the confusion matrix, calibration bins and the AUC histograms."""
    classes = logits.shape[1]
    targets = targets.long().cpu()
    probabilities = torch.softmax(logits.float(), dim=-1).cpu().numpy()
    truth = targets.numpy()
    predicted = probabilities.argmax(axis=1)
    confidence = probabilities.max(axis=1, initial=0.0)
    cells = np.minimum((confidence * ECE_BINS).astype(int), ECE_BINS - 1)
    bins = _auc_bins(classes)
    score = np.clip(_logits(probabilities), -AUC_LOGIT, AUC_LOGIT)
    cell = np.minimum(((score + AUC_LOGIT) / (2 * AUC_LOGIT) * bins).astype(np.int64), bins - 1)
    offsets = np.arange(classes) * bins
    rows = np.arange(len(truth))
    return {
        "loss_sum": np.float64(
            nn.functional.cross_entropy(logits.float(), targets, reduction="sum")
        ),
        "loss_count": np.float64(len(truth)),
        "confusion": np.bincount(truth * classes + predicted, minlength=classes * classes).reshape(
            classes, classes
        ),
        "ece_rows": np.bincount(cells, minlength=ECE_BINS),
        "ece_correct": np.bincount(cells, weights=predicted == truth, minlength=ECE_BINS),
        "ece_confidence": np.bincount(cells, weights=confidence, minlength=ECE_BINS),
        "auc_all": np.bincount((cell + offsets).ravel(), minlength=classes * bins),
        "auc_positive": np.bincount(cell[rows, truth] + truth * bins, minlength=classes * bins),
    }


def classification_metrics(sums: Sums) -> dict[str, float]:
    """test_loss, accuracy, macro F1 (as scikit-learn's, zero_division=0), top-label ECE over
    ``ECE_BINS`` bins, and ROC-AUC (binary, or one-vs-rest macro; left out when T lacks a
    class)."""
    confusion = sums["confusion"]
    rows = confusion.sum()
    hits = np.diag(confusion)
    truth_counts, predicted_counts = confusion.sum(axis=1), confusion.sum(axis=0)
    seen = (truth_counts + predicted_counts) > 0
    f1 = 2 * hits[seen] / (truth_counts[seen] + predicted_counts[seen])
    result = {
        "test_loss": float(sums["loss_sum"] / sums["loss_count"]),
        "test_accuracy": float(hits.sum() / rows),
        "test_macro_f1": float(f1.mean()),
        "test_ece": float(np.abs(sums["ece_correct"] - sums["ece_confidence"]).sum() / rows),
    }
    if (truth_counts > 0).all():
        classes = len(truth_counts)
        every = sums["auc_all"].reshape(classes, -1)
        positive = sums["auc_positive"].reshape(classes, -1)
        scores = [_auc(positive[c], every[c] - positive[c]) for c in range(classes)]
        result["test_roc_auc"] = scores[1] if classes == 2 else float(np.mean(scores))
    return result


def regression_summary(
    scaled_outputs: torch.Tensor, targets: torch.Tensor, mean: float, std: float
) -> Sums:
    """The standardized squared error (the loss) and the errors in the target's own units; the
    targets' sums are taken about ``mean`` (the training pool's), which keeps them exact."""
    outputs = scaled_outputs.float().squeeze(-1).cpu().double()
    truth = targets.float().cpu().double()
    values = outputs * std + mean
    error = (values - truth).numpy()
    centred = (truth - mean).numpy()
    return {
        "loss_sum": np.float64(((outputs - (truth - mean) / std) ** 2).sum()),
        "loss_count": np.float64(len(truth)),
        "squared_error": np.float64((error**2).sum()),
        "absolute_error": np.float64(np.abs(error).sum()),
        "target_sum": np.float64(centred.sum()),
        "target_squares": np.float64((centred**2).sum()),
    }


def regression_metrics(sums: Sums) -> dict[str, float]:
    """test_loss, and MSE, MAE and R² in the target's own units (R² as scikit-learn's)."""
    rows = float(sums["loss_count"])
    spread = float(sums["target_squares"] - sums["target_sum"] ** 2 / rows)
    error = float(sums["squared_error"])
    perfect = 1.0 if error == 0 else 0.0  # a constant target: as scikit-learn scores it
    r2 = 1 - error / spread if spread > 0 else perfect
    return {
        "test_loss": float(sums["loss_sum"] / rows),
        "test_mse": error / rows,
        "test_mae": float(sums["absolute_error"]) / rows,
        "test_r2": r2,
    }


def _auc_bins(classes: int) -> int:
    return int(min(AUC_BINS, max(256, AUC_CELLS // max(classes, 1))))


def _logits(probabilities: np.ndarray) -> np.ndarray:
    p = probabilities.astype(np.float64)
    with np.errstate(divide="ignore"):
        return np.log(p) - np.log1p(-p)


def _auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """The probability that a positive scores above a negative (ties in a cell: one half)."""
    below = np.cumsum(negative) - negative
    pairs = positive.sum() * negative.sum()
    return float((positive * (below + 0.5 * negative)).sum() / pairs) if pairs else float("nan")
