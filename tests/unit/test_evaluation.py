"""The test metrics the supervised objective reports for every run (train, sweep and comparison
children): checked against scikit-learn and by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn import metrics

from trainers.families.summed_metrics import added
from trainers.families.tabular_net import Supervised


def test_expected_calibration_error_by_hand():
    probabilities = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.45, 0.55]])
    truth = torch.tensor([0, 1, 1, 1])
    # bins of width 1/15: 0.9 and 0.8 and 0.7 and 0.55 fall in four different bins
    expected = (abs(1 - 0.9) + abs(0 - 0.8) + abs(1 - 0.7) + abs(1 - 0.55)) / 4
    classification = Supervised("classification")
    got = classification.metrics(torch.tensor(np.log(probabilities)), truth)
    assert got["test_ece"] == pytest.approx(expected, rel=1e-6)
    confident = torch.tensor([[30.0, -30.0], [-30.0, 30.0]])
    assert classification.metrics(confident, torch.tensor([0, 1]))["test_ece"] < 1e-12


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
    assert got["test_roc_auc"] == pytest.approx(  # from fine score histograms
        metrics.roc_auc_score(targets, probabilities, multi_class="ovr"), abs=1e-3
    )
    assert 0 <= got["test_ece"] <= 1
    binary = Supervised("classification").metrics(logits[:, :2], targets % 2)
    assert binary["test_roc_auc"] == pytest.approx(
        metrics.roc_auc_score(targets % 2, torch.softmax(logits[:, :2], -1)[:, 1].numpy()),
        abs=1e-3,
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


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_metrics_summed_batch_by_batch_equal_the_whole_parts(task):
    """A streamed part is scored by adding each batch's sums: the same metrics as in one go."""
    rng = np.random.default_rng(1)
    if task == "classification":
        outputs = torch.tensor(rng.normal(size=(5000, 4)) * 3, dtype=torch.float32)
        targets = torch.tensor(rng.integers(0, 4, 5000))
    else:
        outputs = torch.tensor(rng.normal(size=(5000, 1)), dtype=torch.float32)
        targets = torch.tensor(rng.normal(50.0, 5.0, 5000), dtype=torch.float32)
    objective = Supervised(task, target_mean=50.0, target_std=5.0)
    total = None
    for start in range(0, 5000, 1024):
        batch = slice(start, start + 1024)
        total = added(total, objective.summary(outputs[batch], targets[batch]))
    empty = objective.summary(outputs[:0], targets[:0])  # a worker whose shard has ended
    whole = objective.metrics(outputs, targets)
    assert objective.metrics_of(added(total, empty)) == pytest.approx(whole, rel=1e-6)
    assert whole["test_loss"] == pytest.approx(float(objective.loss(outputs, targets)), rel=1e-5)


def test_roc_auc_from_histograms_is_within_a_thousandth_of_the_exact():
    rng = np.random.default_rng(2)
    truth = rng.integers(0, 3, 20_000)
    logits = rng.normal(size=(20_000, 3)) + 1.5 * np.eye(3)[truth]
    got = Supervised("classification").metrics(torch.tensor(logits), torch.tensor(truth))
    exact = metrics.roc_auc_score(
        truth, torch.softmax(torch.tensor(logits), -1).numpy(), multi_class="ovr"
    )
    assert got["test_roc_auc"] == pytest.approx(exact, abs=1e-3)


def test_a_models_summary_leaves_out_what_mlflows_evaluator_logs_beside_ours():
    """`deploy` and `/v1/model` list a model's test metrics once: not test_accuracy and its
    MLflow twin test_accuracy_score, test_macro_f1 and the weighted test_f1_score."""
    from orchestrator.evaluation import own_test_metrics

    logged = {"test_accuracy": 0.9, "test_accuracy_score": 0.9, "test_macro_f1": 0.8}
    logged |= {"test_f1_score": 0.81, "test_example_count": 360, "val_loss": 0.1, "test_ece": 0.02}
    ours = {"test_accuracy": 0.9, "test_macro_f1": 0.8, "test_ece": 0.02}
    assert own_test_metrics(logged) == ours
