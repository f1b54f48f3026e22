"""The numbers of a comparison: each strategy against standard training, paired by seed.

Pure: no Ray, no MLflow. Each seed trains every strategy on the same split, initialisation and
step budget, so the differences from standard training are paired; the test is a two-sided
paired t-test (scipy's ``ttest_rel``) on the per-seed differences, with a t-based 95% confidence
interval, and the comparison's p-values (every strategy x metric) are corrected together with
Holm's step-down method.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

BASELINE = "standard"  # every other strategy is paired with it
DEFAULT = "red_blue"  # its metrics keep the names of a two-strategy comparison: delta/<M>_...
STRATEGIES = (DEFAULT, BASELINE)  # the comparison without --strategies
JITTER = "val_loss_jitter"
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
    """One metric of a strategy and of standard training on the seeds where both finished."""

    metric: str
    strategy: str
    seeds: list[int]
    values: np.ndarray  # the strategy's, per seed
    standard: np.ndarray

    @property
    def deltas(self) -> np.ndarray:
        """The strategy minus standard, per seed."""
        return self.values - self.standard

    def test(self) -> tuple[float, float, float]:
        """(p-value, 95% CI low, high) of the mean difference; NaN with fewer than 2 seeds or
        identical differences (no spread to test against)."""
        from scipy import stats

        deltas = self.deltas
        if len(deltas) < 2 or not np.ptp(deltas) > 0:
            return math.nan, math.nan, math.nan
        p_value = float(stats.ttest_rel(self.values, self.standard).pvalue)
        half = float(stats.t.ppf(1 - ALPHA / 2, len(deltas) - 1) * stats.sem(deltas))
        mean = float(deltas.mean())
        return p_value, mean - half, mean + half


def label(strategy: str) -> str:
    """How a strategy is written in prose: ``red_blue_prune`` -> ``red-blue-prune``."""
    return strategy.replace("_", "-")


def metric_names(metric: str) -> list[str]:
    """The metrics a comparison reports: the score metric, ``test_loss``, ``val_loss_jitter``."""
    return list(dict.fromkeys((metric, "test_loss", JITTER)))


def strategies_of(children: Sequence[Child], strategies: Sequence[str] | None = None) -> list[str]:
    """Standard training, then the other ``strategies`` (by default those of ``children``, in
    order of appearance)."""
    names = strategies if strategies is not None else [c.strategy for c in children]
    return [BASELINE, *(name for name in dict.fromkeys(names) if name != BASELINE)]


def finished(children: Sequence[Child], strategy: str, metric: str) -> dict[int, float]:
    """``metric`` of ``strategy`` by seed, on the seeds where it finished."""
    return {
        c.seed: c.metrics[metric]
        for c in children
        if c.strategy == strategy and c.status == "FINISHED" and metric in c.metrics
    }


def paired(children: Sequence[Child], metric: str, strategy: str = DEFAULT) -> Paired:
    """``metric`` of ``strategy`` and of standard training on every seed where both finished,
    in seed order."""
    mine, theirs = finished(children, strategy, metric), finished(children, BASELINE, metric)
    seeds = sorted(set(mine) & set(theirs))
    return Paired(
        metric,
        strategy,
        seeds,
        np.array([mine[s] for s in seeds], dtype=np.float64),
        np.array([theirs[s] for s in seeds], dtype=np.float64),
    )


def delta_key(strategy: str, metric: str, what: str) -> str:
    """The parent metric of a paired difference: ``delta/<M>_<what>`` for red-blue (the names of
    a two-strategy comparison), ``delta/<S>/<M>_<what>`` for any other strategy S; ``what`` is
    ``mean``, ``p_value`` or ``p_holm``."""
    middle = "" if strategy == DEFAULT else f"{strategy}/"
    return f"delta/{middle}{metric}_{what}"


def ratio_key(strategy: str) -> str:
    """``compute_ratio`` for red-blue, ``<S>/compute_ratio`` for any other strategy S."""
    return "compute_ratio" if strategy == DEFAULT else f"{strategy}/compute_ratio"


def holm(p_values: Mapping[str, float]) -> dict[str, float]:
    """Holm-Bonferroni adjusted p-values of a family of tests: the i-th smallest of m p-values
    times (m - i + 1), never below the adjusted one before it, at most 1. A NaN (no test) stays
    NaN and is not counted in m."""
    ranked = sorted((p, key) for key, p in p_values.items() if not math.isnan(p))
    adjusted = dict.fromkeys(p_values, math.nan)
    running = 0.0
    for i, (p_value, key) in enumerate(ranked):
        running = max(running, min(1.0, (len(ranked) - i) * p_value))
        adjusted[key] = running
    return adjusted


def _mean(values: Sequence[float] | np.ndarray) -> float:
    return float(np.mean(values)) if len(values) else math.nan


def _std(values: Sequence[float] | np.ndarray) -> float:
    return float(np.std(values, ddof=1)) if len(values) > 1 else math.nan


def parent_metrics(
    children: Sequence[Child], metric: str, strategies: Sequence[str] | None = None
) -> dict[str, float]:
    """The comparison's metrics. For ``metric``, ``test_loss`` and ``val_loss_jitter``: each
    strategy's mean and std over the seeds it finished (``<S>/<M>_mean``, ``_std``), and each
    strategy's paired difference from standard training with its p-value and Holm-adjusted
    p-value (:func:`delta_key`; the family is every p-value here). Each strategy's mean
    overfitting gap (final training loss minus test loss); each strategy's training time over
    standard's, summed over the paired seeds (:func:`ratio_key`); ``seeds_paired``, the seeds on
    which every strategy finished."""
    strategies = strategies_of(children, strategies)
    others = strategies[1:]
    out: dict[str, float] = {}
    p_values: dict[str, float] = {}
    for name in metric_names(metric):
        for strategy in strategies:
            values = list(finished(children, strategy, name).values())
            out[f"{strategy}/{name}_mean"] = _mean(values)
            out[f"{strategy}/{name}_std"] = _std(values)
        for strategy in others:
            pair = paired(children, name, strategy)
            out[delta_key(strategy, name, "mean")] = _mean(pair.deltas)
            p_values[delta_key(strategy, name, "p_value")] = pair.test()[0]
    for key, adjusted in holm(p_values).items():
        out[key] = p_values[key]
        out[key.removesuffix("_p_value") + "_p_holm"] = adjusted
    for strategy in strategies:
        train = finished(children, strategy, "final_train_loss")
        test = finished(children, strategy, "test_loss")
        gaps = [train[s] - test[s] for s in sorted(set(train) & set(test))]
        if gaps:
            out[f"{strategy}/gap_mean"] = _mean(gaps)
    for strategy in others:
        seconds = paired(children, "train_seconds", strategy)
        if seconds.seeds and seconds.standard.sum() > 0:
            out[ratio_key(strategy)] = float(seconds.values.sum() / seconds.standard.sum())
    common = set.intersection(*(set(finished(children, s, metric)) for s in strategies))
    out["seeds_paired"] = float(len(common))
    return out


def verdict(
    pair: Paired,
    higher_is_better: bool,
    compute_ratio: float | None,
    p_holm: float | None = None,
) -> str:
    """One line: the effect of ``pair.strategy`` on ``pair.metric``, its uncertainty, and what
    it cost; significant only if the Holm-adjusted p-value ``p_holm`` (the raw one when not
    given) is below 0.05. Never more than the numbers say."""
    name, count = label(pair.strategy), len(pair.seeds)
    if count < 2:
        return (
            f"{count} paired seed(s): too few to tell {name} from standard training "
            "(run more with --seeds)"
        )
    mean = float(pair.deltas.mean())
    p_value, low, high = pair.test()
    cost = f"; {name} took {compute_ratio:.2f}x the training time" if compute_ratio else ""
    if math.isnan(p_value):
        return (
            f"{name} minus standard {pair.metric} is {mean:+.4f} on all {count} seeds: no "
            f"spread to test{cost}"
        )
    corrected = p_value if p_holm is None or math.isnan(p_holm) else p_holm
    holm_text = "" if p_holm is None else f", Holm p = {corrected:.3g}"
    effect = f"{pair.metric} {mean:+.4f} (95% CI [{low:+.4f}, {high:+.4f}], paired t-test "
    effect += f"p = {p_value:.3g}{holm_text}, {count} seeds)"
    if corrected < ALPHA:
        side = "better" if (mean > 0) == higher_is_better else "worse"
        return f"{name} is {side} than standard training: {effect}{cost}"
    why = "the interval includes 0" if low <= 0 <= high else "not significant after Holm"
    return f"no significant difference between {name} and standard training: {effect}; {why}{cost}"
