"""The test metrics the supervised objective reports for every run (train, sweep and comparison
children): checked against scikit-learn and by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn import metrics

from trainers.families.tabular_net import Supervised, expected_calibration_error


def test_expected_calibration_error_by_hand():
    probabilities = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.45, 0.55]])
    truth = np.array([0, 1, 1, 1])
    # bins of width 1/15: 0.9 and 0.8 and 0.7 and 0.55 fall in four different bins
    expected = (abs(1 - 0.9) + abs(0 - 0.8) + abs(1 - 0.7) + abs(1 - 0.55)) / 4
    assert expected_calibration_error(probabilities, truth) == pytest.approx(expected)
    confident = np.array([[1.0, 0.0], [0.0, 1.0]])
    assert expected_calibration_error(confident, np.array([0, 1])) == 0.0


def test_classification_metrics_match_scikit_learn():
    rng = np.random.default_rng(0)
    logits = torch.tensor(rng.normal(size=(60, 3)), dtype=torch.float32)
    targets = torch.tensor(rng.integers(0, 3, 60))
    got = Supervised("classification").metrics(logits, targets)
    probabilities = torch.softmax(logits, dim=-1).numpy()
    predicted = probabilities.argmax(axis=1)
    assert got["test_accuracy"] == pytest.approx(metrics.accuracy_score(targets, predicted))
    assert got["test_macro_f1"] == pytest.approx(
        metrics.f1_score(targets, predicted, average="macro")
    )
    assert got["test_roc_auc"] == pytest.approx(
        metrics.roc_auc_score(targets, probabilities, multi_class="ovr")
    )
    assert 0 <= got["test_ece"] <= 1
    binary = Supervised("classification").metrics(logits[:, :2], targets % 2)
    assert binary["test_roc_auc"] == pytest.approx(
        metrics.roc_auc_score(targets % 2, torch.softmax(logits[:, :2], -1)[:, 1].numpy())
    )
    missing = Supervised("classification").metrics(logits, torch.zeros(60, dtype=torch.long))
    assert "test_roc_auc" not in missing  # T lacks a class: no AUC rather than a wrong one


def test_regression_metrics_are_in_the_targets_units():
    outputs = torch.tensor([[0.0], [1.0], [-1.0], [0.5]])  # standardized predictions
    targets = torch.tensor([10.0, 12.5, 7.0, 11.0])
    got = Supervised("regression", target_mean=10.0, target_std=2.0).metrics(outputs, targets)
    values = np.array([10.0, 12.0, 8.0, 11.0])
    assert got["test_mse"] == pytest.approx(np.mean((values - targets.numpy()) ** 2))
    assert got["test_mae"] == pytest.approx(np.mean(np.abs(values - targets.numpy())))
    assert got["test_r2"] == pytest.approx(metrics.r2_score(targets.numpy(), values))
