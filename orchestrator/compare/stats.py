"""The numbers of a comparison: red-blue against standard training, paired by seed.

Pure: no Ray, no MLflow. Each seed trains both strategies on the same split, initialisation and
step budget, so the differences are paired; the test is a two-sided paired t-test (scipy's
``ttest_rel``) on the per-seed differences, with a t-based 95% confidence interval.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

STRATEGIES = ("red_blue", "standard")
ALPHA = 0.05


@dataclass(frozen=True)
class Child:
    """One training of the comparison: a strategy on a seed, and its final metrics."""

    strategy: str
    seed: int
    run_id: str
    status: str
    metrics: dict[str, float]


@dataclass(frozen=True)
class Paired:
    """One metric of both strategies on the seeds where both finished."""

    metric: str
    seeds: list[int]
    red_blue: np.ndarray
    standard: np.ndarray

    @property
    def deltas(self) -> np.ndarray:
        """red_blue minus standard, per seed."""
        return self.red_blue - self.standard

    def test(self) -> tuple[float, float, float]:
        """(p-value, 95% CI low, high) of the mean difference; NaN with fewer than 2 seeds or
        identical differences (no spread to test against)."""
        from scipy import stats

        deltas = self.deltas
        if len(deltas) < 2 or not np.ptp(deltas) > 0:
            return math.nan, math.nan, math.nan
        p_value = float(stats.ttest_rel(self.red_blue, self.standard).pvalue)
        half = float(stats.t.ppf(1 - ALPHA / 2, len(deltas) - 1) * stats.sem(deltas))
        mean = float(deltas.mean())
        return p_value, mean - half, mean + half


def paired(children: list[Child], metric: str) -> Paired:
    """``metric`` of both strategies on every seed where both finished, in seed order."""
    finished = {
        (c.strategy, c.seed): c.metrics[metric]
        for c in children
        if c.status == "FINISHED" and metric in c.metrics
    }
    seeds = sorted(seed for strategy, seed in finished if strategy == "red_blue")
    seeds = [seed for seed in seeds if ("standard", seed) in finished]
    return Paired(
        metric,
        seeds,
        np.array([finished[("red_blue", s)] for s in seeds], dtype=np.float64),
        np.array([finished[("standard", s)] for s in seeds], dtype=np.float64),
    )


def _std(values: np.ndarray) -> float:
    return float(values.std(ddof=1)) if len(values) > 1 else math.nan


def parent_metrics(children: list[Child], metric: str) -> dict[str, float]:
    """The comparison's metrics: for ``metric`` and ``test_loss`` each strategy's mean and std,
    the paired difference and its p-value; each strategy's mean overfitting gap (final training
    loss minus test loss); red-blue's training time over standard's (summed over the seeds)."""
    out: dict[str, float] = {}
    for name in dict.fromkeys((metric, "test_loss")):
        pair = paired(children, name)
        for strategy in STRATEGIES:
            values = getattr(pair, strategy)
            out[f"{strategy}/{name}_mean"] = float(values.mean()) if len(values) else math.nan
            out[f"{strategy}/{name}_std"] = _std(values)
        out[f"delta/{name}_mean"] = float(pair.deltas.mean()) if pair.seeds else math.nan
        out[f"delta/{name}_p_value"] = pair.test()[0]
    train, test = paired(children, "final_train_loss"), paired(children, "test_loss")
    if train.seeds == test.seeds and train.seeds:
        out["red_blue/gap_mean"] = float((train.red_blue - test.red_blue).mean())
        out["standard/gap_mean"] = float((train.standard - test.standard).mean())
    seconds = paired(children, "train_seconds")
    if seconds.seeds and seconds.standard.sum() > 0:
        out["compute_ratio"] = float(seconds.red_blue.sum() / seconds.standard.sum())
    out["seeds_paired"] = float(len(paired(children, metric).seeds))
    return out


def verdict(pair: Paired, higher_is_better: bool, compute_ratio: float | None) -> str:
    """One line: the effect on ``pair.metric``, its uncertainty, and what it cost; never more
    than the numbers say."""
    count = len(pair.seeds)
    if count < 2:
        return (
            f"{count} paired seed(s): too few to tell red-blue from standard training "
            "(run more with --seeds)"
        )
    mean = float(pair.deltas.mean())
    p_value, low, high = pair.test()
    cost = f"; red-blue took {compute_ratio:.2f}x the training time" if compute_ratio else ""
    if math.isnan(p_value):
        return (
            f"red-blue minus standard {pair.metric} is {mean:+.4f} on all {count} seeds: no "
            f"spread to test{cost}"
        )
    better = (mean > 0) == higher_is_better
    effect = f"{pair.metric} {mean:+.4f} (95% CI [{low:+.4f}, {high:+.4f}], paired t-test "
    effect += f"p = {p_value:.3g}, {count} seeds)"
    if p_value < ALPHA:
        side = "better" if better else "worse"
        return f"red-blue is {side} than standard training: {effect}{cost}"
    return (
        f"no significant difference between red-blue and standard training: {effect}; "
        f"the interval includes 0{cost}"
    )
