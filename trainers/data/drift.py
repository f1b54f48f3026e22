"""Input drift: a compact summary of the training inputs, and the population stability index.

Training stores, per feature, the edges of up to ``BINS`` quantile bins of the training pool P'
and the share of training rows in each bin (no raw rows). A served model bins the rows it has
seen lately with the same edges and compares the shares:

    PSI = sum over bins of (served - trained) * ln(served / trained)

with shares floored at ``FLOOR`` so that an empty bin does not make it infinite. By the usual
reading, below 0.1 the inputs have not moved, 0.1-0.25 they moved somewhat, above 0.25 a lot.
No torch here: the serving API imports it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

BINS = 10
FLOOR = 1e-4


def bin_edges(values: np.ndarray, bins: int = BINS) -> list[float]:
    """Interior edges of up to ``bins`` quantile bins (fewer where values repeat)."""
    quantiles = np.quantile(values, np.linspace(0, 1, bins + 1)[1:-1])
    return [float(edge) for edge in np.unique(quantiles)]


def bin_index(values: np.ndarray, edges: Sequence[float]) -> np.ndarray:
    """The bin of each value: 0 .. len(edges); a value equal to an edge goes to the bin above."""
    return np.searchsorted(np.asarray(edges, dtype=np.float64), values, side="right")


def shares(indices: np.ndarray, num_bins: int) -> np.ndarray:
    """The fraction of ``indices`` in each of ``num_bins`` bins."""
    counts = np.bincount(indices, minlength=num_bins).astype(np.float64)
    return counts / max(1.0, counts.sum())


def summarize(features: np.ndarray, names: Sequence[str]) -> dict[str, dict[str, list[float]]]:
    """``{name: {"edges": [...], "shares": [...]}}`` of the training inputs, per feature."""
    summary = {}
    for column, name in enumerate(names):
        values = np.asarray(features[:, column], dtype=np.float64)
        edges = bin_edges(values)
        summary[name] = {
            "edges": edges,
            "shares": [float(s) for s in shares(bin_index(values, edges), len(edges) + 1)],
        }
    return summary


def psi(trained: Sequence[float], served: np.ndarray) -> float:
    """Population stability index of the served shares against the trained ones."""
    expected = np.maximum(np.asarray(trained, dtype=np.float64), FLOOR)
    actual = np.maximum(np.asarray(served, dtype=np.float64), FLOOR)
    return float(np.sum((actual - expected) * np.log(actual / expected)))
