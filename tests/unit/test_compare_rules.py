"""The numbers of `redblue compare` without Ray: pairing by seed, the paired test, Holm's
correction, the parent's metrics, the verdicts, and the CSV and plot it logs."""

from __future__ import annotations

import io
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from orchestrator import console
from orchestrator.compare.report import NO_P_VALUE, csv_text, figure, print_comparison
from orchestrator.compare.run import compare_config
from orchestrator.compare.stats import Child, holm, paired, parent_metrics, verdict
from orchestrator.config import validate


def child(
    strategy, seed, accuracy, loss=0.5, train=0.3, seconds=10.0, status="FINISHED", jitter=None
):
    metrics = {
        "test_accuracy": accuracy,
        "test_loss": loss,
        "final_train_loss": train,
        "train_seconds": seconds,
    }
    if jitter is not None:
        metrics["val_loss_jitter"] = jitter
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
    # one test with a p-value (test_loss has no spread, no jitter was reported): Holm keeps it
    assert metrics["delta/test_accuracy_p_holm"] == metrics["delta/test_accuracy_p_value"]
    assert math.isnan(metrics["delta/test_loss_p_holm"])
    assert math.isnan(metrics["red_blue/val_loss_jitter_mean"])


def test_the_verdict_says_no_more_than_the_numbers():
    better = verdict(paired(CHILDREN, "test_accuracy"), True, 1.2)
    assert better.startswith("red-blue is better than standard training: test_accuracy +0.0180")
    assert "paired t-test p = " in better and "5 seeds" in better and "1.20x" in better
    p_value = paired(CHILDREN, "test_accuracy").test()[0]
    corrected = verdict(paired(CHILDREN, "test_accuracy"), True, None, p_holm=0.2)
    assert corrected.startswith("no significant difference between red-blue and standard")
    assert f"p = {p_value:.3g}, Holm p = 0.2, 5 seeds" in corrected
    assert corrected.endswith("not significant after Holm")  # the interval excludes 0
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


def test_the_plot_has_a_panel_per_metric_and_a_position_per_strategy():
    fig = figure(CHILDREN, "test_accuracy")
    assert [axis.get_title().split(":")[0] for axis in fig.axes] == ["test_accuracy", "test_loss"]
    fig = figure(THREE, "test_accuracy", ["red_blue", "red_blue_prune", "standard"])
    titles = [axis.get_title().split(":")[0] for axis in fig.axes]
    assert titles == ["test_accuracy", "test_loss", "val_loss_jitter"]
    ticks = [tick.get_text() for tick in fig.axes[0].get_xticklabels()]
    assert ticks == ["standard", "red-blue", "red-blue-prune"]


def test_the_comparison_is_a_full_grid_of_strategy_by_seed():
    grid = compare_config(validate({"sweep": {"scheduler": "asha"}}), 3).sweep
    assert grid.space["strategy"].grid == ["red_blue", "standard"]
    assert grid.space["seed"].grid == [0, 1, 2]
    assert grid.scheduler == "fifo" and grid.num_samples == 1
    three = compare_config(validate({}), 2, ["standard", "red_blue", "red_blue_prune"]).sweep
    assert three.space["strategy"].grid == ["standard", "red_blue", "red_blue_prune"]


# Three strategies: red-blue, red-blue with pruning, standard; jitter reported by every run.
PRUNE = [0.95, 0.96, 0.94, 0.97, 0.96]
JITTER = {"red_blue": [0.02, 0.03, 0.02, 0.04, 0.03], "red_blue_prune": [0.01] * 4 + [0.02]}
JITTER["standard"] = [0.03, 0.03, 0.04, 0.05, 0.03]
THREE = (
    [child("red_blue", s, a, jitter=JITTER["red_blue"][s], seconds=12.0) for s, a in enumerate(RED)]
    + [child("standard", s, a, jitter=JITTER["standard"][s]) for s, a in enumerate(STANDARD)]
    + [
        child("red_blue_prune", s, a, loss=0.4 + s / 100, jitter=JITTER["red_blue_prune"][s])
        for s, a in enumerate(PRUNE)
    ]
)


def test_each_strategy_is_paired_with_standard_by_seed():
    for strategy, values in (("red_blue", RED), ("red_blue_prune", PRUNE)):
        pair = paired(THREE, "test_accuracy", strategy)
        assert pair.strategy == strategy and pair.seeds == [0, 1, 2, 3, 4]
        np.testing.assert_allclose(pair.deltas, np.subtract(values, STANDARD))
        assert pair.test()[0] == pytest.approx(stats.ttest_rel(values, STANDARD).pvalue)


def test_holm_against_a_hand_computation():
    # sorted: 0.01 x 3 = 0.03; 0.03 x 2 = 0.06; 0.04 x 1 = 0.04, raised to the 0.06 before it
    adjusted = holm({"a": 0.01, "b": 0.04, "c": 0.03, "none": math.nan})
    assert adjusted["a"] == pytest.approx(0.03)
    assert adjusted["c"] == pytest.approx(0.06)
    assert adjusted["b"] == pytest.approx(0.06)
    assert math.isnan(adjusted["none"])  # no test: neither adjusted nor counted
    assert holm({"x": 0.5, "y": 0.6}) == {"x": 1.0, "y": 1.0}  # 0.5 x 2 capped at 1
    assert holm({"only": 0.02}) == {"only": 0.02}


def test_parent_metrics_of_three_strategies():
    metrics = parent_metrics(THREE, "test_accuracy", ["standard", "red_blue", "red_blue_prune"])
    names = {
        f"{s}/{m}_{what}"
        for s in ("standard", "red_blue", "red_blue_prune")
        for m in ("test_accuracy", "test_loss", "val_loss_jitter")
        for what in ("mean", "std")
    }
    for m in ("test_accuracy", "test_loss", "val_loss_jitter"):
        for what in ("mean", "p_value", "p_holm"):
            names |= {f"delta/{m}_{what}", f"delta/red_blue_prune/{m}_{what}"}
    names |= {f"{s}/gap_mean" for s in ("standard", "red_blue", "red_blue_prune")}
    names |= {"compute_ratio", "red_blue_prune/compute_ratio", "seeds_paired"}
    assert set(metrics) == names
    assert metrics["red_blue_prune/test_accuracy_mean"] == pytest.approx(np.mean(PRUNE))
    assert metrics["delta/red_blue_prune/test_accuracy_mean"] == pytest.approx(
        np.mean(PRUNE) - np.mean(STANDARD)
    )
    assert metrics["delta/test_accuracy_mean"] == pytest.approx(np.mean(RED) - np.mean(STANDARD))
    assert metrics["red_blue_prune/gap_mean"] == pytest.approx(0.3 - 0.42)
    assert metrics["compute_ratio"] == pytest.approx(1.2)
    assert metrics["red_blue_prune/compute_ratio"] == pytest.approx(1.0)
    for strategy, values in JITTER.items():
        assert metrics[f"{strategy}/val_loss_jitter_mean"] == pytest.approx(np.mean(values))
        assert metrics[f"{strategy}/val_loss_jitter_std"] == pytest.approx(np.std(values, ddof=1))
    jitter = np.subtract(JITTER["red_blue_prune"], JITTER["standard"])
    assert metrics["delta/red_blue_prune/val_loss_jitter_mean"] == pytest.approx(jitter.mean())
    assert metrics["delta/red_blue_prune/val_loss_jitter_p_value"] == pytest.approx(
        stats.ttest_rel(JITTER["red_blue_prune"], JITTER["standard"]).pvalue
    )
    # Holm over every p-value of the parent (each strategy x metric that has a spread)
    p_values = {k: v for k, v in metrics.items() if k.endswith("_p_value")}
    for key, adjusted in holm(p_values).items():
        holm_key = key.removesuffix("_p_value") + "_p_holm"
        assert metrics[holm_key] == pytest.approx(adjusted, nan_ok=True)
    tested = sorted(v for v in p_values.values() if not math.isnan(v))
    assert len(tested) == 5  # red-blue's test_loss minus standard's is the same on every seed
    smallest = min(p_values, key=lambda k: p_values[k] if not math.isnan(p_values[k]) else 2)
    assert metrics[smallest.removesuffix("_p_value") + "_p_holm"] == pytest.approx(5 * tested[0])


def test_seeds_paired_counts_the_seeds_every_strategy_finished():
    children = [c for c in THREE if (c.strategy, c.seed) != ("red_blue_prune", 2)]
    metrics = parent_metrics(children, "test_accuracy")
    assert metrics["seeds_paired"] == 4
    assert metrics["red_blue/test_accuracy_mean"] == pytest.approx(np.mean(RED))  # its 5 seeds
    assert metrics["red_blue_prune/test_accuracy_mean"] == pytest.approx(
        np.mean([PRUNE[s] for s in (0, 1, 3, 4)])
    )


def test_the_console_shows_every_strategy_and_a_verdict_for_each():
    strategies = ["red_blue", "red_blue_prune", "standard"]
    metrics = parent_metrics(THREE, "test_accuracy", strategies)
    with console.out.capture() as captured:
        verdicts = print_comparison(THREE, "test_accuracy", True, metrics, strategies)
    text = captured.get()
    assert list(verdicts) == ["red_blue", "red_blue_prune"]
    assert verdicts["red_blue_prune"].startswith("red-blue-prune is better than standard")
    assert "Holm p = " in verdicts["red_blue_prune"]
    assert "test_accuracy per seed" in text and "red-blue-prune" in text
    assert "delta val_loss_jitter (red-blue-prune - standard)" in text
    assert "Holm p: each p-value corrected for the 5 tests" in text
    assert text.count("verdict:") == 2
    # red-blue's test_loss minus standard's is the same on every seed: no spread, no test
    assert f"delta test_loss (red-blue - standard): +0.0000, {NO_P_VALUE}" in text


def test_one_seed_shows_differences_without_p_values():
    one = [c for c in THREE if c.seed == 0 and c.strategy in ("red_blue", "standard")]
    metrics = parent_metrics(one, "test_accuracy", ["red_blue", "standard"])
    with console.out.capture() as captured:
        verdicts = print_comparison(one, "test_accuracy", True, metrics, ["red_blue", "standard"])
    text = captured.get()
    assert text.count(NO_P_VALUE) == 3 and "nan" not in text and "Holm p:" not in text
    assert "too few" in verdicts["red_blue"]
