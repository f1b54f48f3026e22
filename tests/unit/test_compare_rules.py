"""The numbers of `redblue compare` without Ray: pairing by seed, the paired test, the parent's
metrics, the verdict, and the CSV and plot it logs."""

from __future__ import annotations

import io
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from orchestrator.compare.report import csv_text, figure
from orchestrator.compare.run import compare_config
from orchestrator.compare.stats import Child, paired, parent_metrics, verdict
from orchestrator.config import validate


def child(strategy, seed, accuracy, loss=0.5, train=0.3, seconds=10.0, status="FINISHED"):
    metrics = {
        "test_accuracy": accuracy,
        "test_loss": loss,
        "final_train_loss": train,
        "train_seconds": seconds,
    }
    return Child(strategy, seed, f"{strategy}-{seed}", status, metrics)


RED = [0.91, 0.93, 0.92, 0.95, 0.94]
STANDARD = [0.90, 0.90, 0.91, 0.92, 0.93]
CHILDREN = [child("red_blue", s, a, seconds=12.0) for s, a in enumerate(RED)] + [
    child("standard", s, a, loss=0.6, train=0.2) for s, a in enumerate(STANDARD)
]


def test_pairs_are_by_seed_and_only_where_both_finished():
    children = [
        *CHILDREN[:4],
        child("red_blue", 4, 0.99, status="FAILED"),
        *CHILDREN[5:],
        child("red_blue", 7, 0.5),  # no standard partner
    ]
    pair = paired(children, "test_accuracy")
    assert pair.seeds == [0, 1, 2, 3]
    np.testing.assert_allclose(pair.deltas, np.subtract(RED[:4], STANDARD[:4]))


def test_the_p_value_is_scipys_paired_t_test_and_the_interval_holds_the_mean():
    pair = paired(CHILDREN, "test_accuracy")
    p_value, low, high = pair.test()
    assert p_value == pytest.approx(stats.ttest_rel(RED, STANDARD).pvalue)
    assert low < pair.deltas.mean() < high
    assert math.isnan(paired(CHILDREN[:1] + CHILDREN[5:6], "test_accuracy").test()[0])


def test_parent_metrics():
    metrics = parent_metrics(CHILDREN, "test_accuracy")
    assert metrics["red_blue/test_accuracy_mean"] == pytest.approx(np.mean(RED))
    assert metrics["standard/test_accuracy_std"] == pytest.approx(np.std(STANDARD, ddof=1))
    assert metrics["delta/test_accuracy_mean"] == pytest.approx(np.mean(RED) - np.mean(STANDARD))
    assert metrics["delta/test_loss_mean"] == pytest.approx(-0.1)
    assert math.isnan(metrics["delta/test_loss_p_value"])  # the same difference on every seed
    assert 0 < metrics["delta/test_accuracy_p_value"] < 0.05
    assert metrics["red_blue/gap_mean"] == pytest.approx(0.3 - 0.5)
    assert metrics["standard/gap_mean"] == pytest.approx(0.2 - 0.6)
    assert metrics["compute_ratio"] == pytest.approx(1.2)
    assert metrics["seeds_paired"] == 5


def test_the_verdict_says_no_more_than_the_numbers():
    better = verdict(paired(CHILDREN, "test_accuracy"), True, 1.2)
    assert better.startswith("red-blue is better than standard training: test_accuracy +0.0180")
    assert "paired t-test p = " in better and "5 seeds" in better and "1.20x" in better
    worse = verdict(paired(CHILDREN, "test_accuracy"), False, None)  # as if lower were better
    assert worse.startswith("red-blue is worse")
    noisy = [child("red_blue", s, a) for s, a in enumerate([0.9, 0.8, 0.95])] + [
        child("standard", s, a) for s, a in enumerate([0.85, 0.9, 0.88])
    ]
    unclear = verdict(paired(noisy, "test_accuracy"), True, None)
    assert unclear.startswith("no significant difference") and "includes 0" in unclear
    assert "too few" in verdict(paired(CHILDREN[:1] + CHILDREN[5:6], "test_accuracy"), True, None)


def test_the_csv_has_a_row_per_child_with_every_final_metric():
    frame = pd.read_csv(io.StringIO(csv_text(CHILDREN)))
    assert len(frame) == 10
    assert list(frame.columns[:5]) == ["strategy", "seed", "run_id", "status", "train_seconds"]
    assert {"test_accuracy", "test_loss", "final_train_loss"} <= set(frame.columns)
    assert list(frame.seed[:2]) == [0, 0]


def test_the_plot_has_a_panel_per_metric():
    fig = figure(CHILDREN, "test_accuracy")
    assert [axis.get_title().split(":")[0] for axis in fig.axes] == ["test_accuracy", "test_loss"]


def test_the_comparison_is_a_full_grid_of_strategy_by_seed():
    grid = compare_config(validate({"sweep": {"scheduler": "asha"}}), 3).sweep
    assert grid.space["strategy.kind"].grid == ["red_blue", "standard"]
    assert grid.space["seed"].grid == [0, 1, 2]
    assert grid.scheduler == "fifo" and grid.num_samples == 1
