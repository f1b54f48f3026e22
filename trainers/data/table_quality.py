"""How much generated rows look like real ones, column by column and pair by pair, as SDMetrics'
quality report defines it (``sdmetrics.reports.single_table.QualityReport``):

- **column shapes**: for a number column the complement of the two-sample Kolmogorov-Smirnov
  statistic (``KSComplement``, gaps left out); for a category or boolean column the complement of
  the total-variation distance of the two frequency tables (``TVComplement``, gaps left out, a
  value only the generated rows have counted 1e-6 times in the real ones);
- **column pair trends**: for two number columns ``1 - |r_real - r_generated| / 2`` of Pearson's
  correlations (``CorrelationSimilarity``, rows with a gap left out); for any other pair the
  complement of the total-variation distance of the two contingency tables
  (``ContingencySimilarity``, a gap a value), a number column cut into ``PAIR_BINS`` equal-width
  bins of its own range in each table (``np.histogram_bin_edges``, then ``np.digitize``);
- **quality**: the mean of the two averages, every pair counted (SDMetrics' unified report
  averages by default only the pairs whose real correlation passes 0.5 or association 0.3).

The ``sdmetrics`` package itself pins pandas below 3, under the pandas this stack runs; these are
its definitions (sdmetrics 0.32) written out, and tests/unit/test_table_quality.py matches its
report's numbers. Pure numpy and pandas.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

from trainers.data.preprocessing import category_key

PAIR_BINS = 10
KS_DECIMALS = 14
UNSEEN_COUNT = 1e-6
MISSING = "<missing>"


def quality(real: pd.DataFrame, generated: pd.DataFrame, numbers: list[str]) -> dict[str, float]:
    """``quality``, ``column_shapes`` and ``column_pair_trends`` over ``real``'s columns;
    ``numbers``: which of them are numbers (the rest are categories)."""
    columns = list(real.columns)
    shapes = list(column_shapes(real, generated, numbers).values())
    trends = []
    for first, second in itertools.combinations(columns, 2):
        if first in numbers and second in numbers:
            trends.append(correlation_similarity(real[[first, second]], generated[[first, second]]))
        else:
            trends.append(
                contingency_similarity(
                    _binned(real, generated, first, numbers),
                    _binned(real, generated, second, numbers),
                )
            )
    shape, trend = float(np.mean(shapes)), float(np.mean(trends)) if trends else 1.0
    return {
        "quality": (shape + trend) / 2,
        "column_shapes": shape,
        "column_pair_trends": trend,
    }


def column_shapes(
    real: pd.DataFrame, generated: pd.DataFrame, numbers: list[str]
) -> dict[str, float]:
    """Each column's shape score: the KS complement for a number, the TV complement otherwise."""
    return {
        column: ks_complement(real[column], generated[column])
        if column in numbers
        else tv_complement(real[column], generated[column])
        for column in real.columns
    }


def ks_complement(real: pd.Series, generated: pd.Series) -> float:
    """1 - the largest gap between the two empirical distribution functions (values rounded to
    14 decimals, as SDMetrics does)."""
    first = np.sort(real.dropna().to_numpy(np.float64).round(KS_DECIMALS))
    second = np.sort(generated.dropna().to_numpy(np.float64).round(KS_DECIMALS))
    if len(first) == 0 or len(second) == 0:
        return 0.0
    points = np.concatenate([first, second])
    gap = np.abs(
        np.searchsorted(first, points, side="right") / len(first)
        - np.searchsorted(second, points, side="right") / len(second)
    )
    return float(1.0 - gap.max())


def tv_complement(real: pd.Series, generated: pd.Series) -> float:
    """1 - half the summed differences of each value's share, gaps left out; a value only the
    generated rows have counts ``UNSEEN_COUNT`` times among the real ones (SDMetrics'
    regularisation)."""
    first = _categories(real.dropna()).value_counts()
    second = _categories(generated.dropna()).value_counts()
    if first.empty or second.empty:
        return 0.0
    first = first.reindex(first.index.union(second.index), fill_value=UNSEEN_COUNT)
    second = second.reindex(first.index, fill_value=0)
    difference = first / first.sum() - second / second.sum()
    return float(1.0 - 0.5 * difference.abs().sum())


def correlation_similarity(real: pd.DataFrame, generated: pd.DataFrame) -> float:
    """1 - |r_real - r_generated| / 2 of Pearson's correlation (rows with a gap left out)."""
    first, second = (frame.dropna().astype(np.float64) for frame in (real, generated))
    r_real = _correlation(first.to_numpy())
    r_generated = _correlation(second.to_numpy())
    return float(1.0 - abs(r_real - r_generated) / 2.0)


def contingency_similarity(
    first: tuple[pd.Series, pd.Series], second: tuple[pd.Series, pd.Series]
) -> float:
    """1 - the total-variation distance of the pairs' joint frequencies, real against generated:
    ``first`` and ``second`` are each column's (real, generated) values, as categories."""
    real = pd.crosstab(first[0], second[0], normalize=True, dropna=False).stack()
    generated = pd.crosstab(first[1], second[1], normalize=True, dropna=False).stack()
    both = real.index.union(generated.index)
    difference = real.reindex(both, fill_value=0.0) - generated.reindex(both, fill_value=0.0)
    return float(1.0 - 0.5 * difference.abs().sum())


def _categories(values: pd.Series) -> pd.Series:
    """Category values as the preprocessing keys them (2007 and 2007.0 alike), a gap a value."""
    return values.map(lambda value: category_key(value) or MISSING)


def _correlation(values: np.ndarray) -> float:
    if len(values) < 2 or np.any(values.std(axis=0) == 0):
        return 0.0
    return float(np.corrcoef(values[:, 0], values[:, 1])[0, 1])


def _binned(
    real: pd.DataFrame, generated: pd.DataFrame, column: str, numbers: list[str]
) -> tuple[pd.Series, pd.Series]:
    """A column's (real, generated) values as categories: a number column's bin in each table
    (:func:`_bins`), a category's value, a gap a category of its own."""
    if column not in numbers:
        return _categories(real[column]), _categories(generated[column])
    return _bins(real[column]), _bins(generated[column])


def _bins(values: pd.Series) -> pd.Series:
    """Each value's bin among ``PAIR_BINS`` equal-width bins of the column's own range, as
    ``np.digitize`` numbers them (1 to ``PAIR_BINS``, the maximum ``PAIR_BINS + 1``; a gap
    shares the maximum's number, as in SDMetrics)."""
    numbers = values.to_numpy(np.float64)
    edges = np.histogram_bin_edges(numbers[~np.isnan(numbers)], bins=PAIR_BINS)
    return pd.Series(np.digitize(numbers, edges), index=values.index)
