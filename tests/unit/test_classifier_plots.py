"""A classifier's ROC, precision-recall and reliability figures: drawn from the class
probabilities, and the reliability diagram's bins are the ones ``test_ece`` averages."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from orchestrator.classifier_plots import (
    CALIBRATION_FILE,
    PRECISION_RECALL_FILE,
    ROC_FILE,
    classifier_figures,
    reliability_bins,
)
from trainers.families.summed_metrics import classification_metrics, classification_summary


def test_the_reliability_diagram_shows_the_same_error_as_test_ece():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(500, 4, generator=generator) * 2
    labels = torch.randint(0, 4, (500,), generator=generator)
    probabilities = torch.softmax(logits, dim=-1).numpy()
    counts, confidence, accuracy, error = reliability_bins(labels.numpy(), probabilities)
    expected = classification_metrics(classification_summary(logits, labels))["test_ece"]
    assert error == pytest.approx(expected, abs=1e-9)
    assert counts.sum() == 500 and len(confidence) == len(accuracy) == (counts > 0).sum()


@pytest.mark.parametrize("classes", [["no", "yes"], list("abcdefghijkl")])
def test_each_figure_has_one_curve_per_drawn_class(classes):
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(1)
    labels = rng.integers(0, len(classes), 300)
    scores = rng.random((300, len(classes))) + np.eye(len(classes))[labels]
    probabilities = scores / scores.sum(axis=1, keepdims=True)
    figures = classifier_figures(labels, probabilities, classes)
    assert set(figures) == {ROC_FILE, PRECISION_RECALL_FILE, CALIBRATION_FILE}
    curves = 1 if len(classes) == 2 else 10  # the positive class; at most ten of twelve
    roc_axis = figures[ROC_FILE].axes[0]
    assert len(roc_axis.lines) == curves + 1  # and the chance diagonal
    assert "macro AUC" in roc_axis.get_title()
    assert len(figures[PRECISION_RECALL_FILE].axes[0].lines) == curves
    for figure in figures.values():
        plt.close(figure)
