"""How much generated rows look like real ones, column by column and pair by pair, as SDMetrics'
quality report defines it (``sdmetrics.reports.single_table.QualityReport``):

- **column shapes**: for a number column the complement of the two-sample Kolmogorov-Smirnov
  statistic (``KSComplement``, gaps left out); for a category or boolean column the complement of
  the total-variation distance of the two frequency tables (``TVComplement``, a gap a category);
- **column pair trends**: for two number columns ``1 - |r_real - r_generated| / 2`` of Pearson's
  correlations (``CorrelationSimilarity``); for any other pair the complement of the total-variation
  distance of the two contingency tables (``ContingencySimilarity``), numbers cut into
  ``PAIR_BINS`` equal-width bins of the real column's range;
- **quality**: the mean of the two averages.

The ``sdmetrics`` package itself pins pandas below 3, under the pandas this stack runs; these are
its definitions, written out. Pure numpy and pandas.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

from trainers.data.preprocessing import category_key

PAIR_BINS = 10
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
    """1 - the largest gap between the two empirical distribution functions."""
    first = np.sort(real.dropna().to_numpy(np.float64))
    second = np.sort(generated.dropna().to_numpy(np.float64))
    if len(first) == 0 or len(second) == 0:
        return 0.0
    points = np.concatenate([first, second])
    gap = np.abs(
        np.searchsorted(first, points, side="right") / len(first)
        - np.searchsorted(second, points, side="right") / len(second)
    )
    return float(1.0 - gap.max())


def tv_complement(real: pd.Series, generated: pd.Series) -> float:
    """1 - half the summed differences of each value's share (a gap is a value)."""
    first = _categories(real).value_counts(normalize=True)
    second = _categories(generated).value_counts(normalize=True)
    both = first.index.union(second.index)
    difference = first.reindex(both, fill_value=0.0) - second.reindex(both, fill_value=0.0)
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
    """A column's (real, generated) values as categories: numbers in ``PAIR_BINS`` bins of the
    real range (values beyond it in the edge bins), gaps as a category of their own."""
    if column not in numbers:
        return _categories(real[column]), _categories(generated[column])
    low, high = real[column].min(), real[column].max()
    edges = np.linspace(low, high, PAIR_BINS + 1)[1:-1]

    def bins(values: pd.Series) -> pd.Series:
        codes = np.digitize(values.to_numpy(np.float64), edges).astype(str)
        return pd.Series(np.where(values.isna(), MISSING, codes), index=values.index)

    return bins(real[column]), bins(generated[column])
