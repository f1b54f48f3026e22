"""Input drift: training summary and population stability index (no Ray, no torch)."""

import numpy as np
import pytest

from trainers.data.drift import bin_index, psi, shares, summarize


def test_summary_holds_bins_not_rows():
    rng = np.random.default_rng(0)
    features = np.column_stack([rng.normal(size=5000), rng.integers(0, 3, size=5000)])
    summary = summarize(features, ["height", "level"])
    assert len(summary["height"]["edges"]) == 9  # ten quantile bins
    assert sum(summary["height"]["shares"]) == pytest.approx(1.0)
    assert summary["height"]["shares"] == pytest.approx([0.1] * 10, abs=0.01)
    assert len(summary["level"]["edges"]) <= 3  # repeated values: fewer bins
    assert len(summary["level"]["shares"]) == len(summary["level"]["edges"]) + 1


def test_psi_is_small_for_the_same_distribution_and_large_for_a_shift():
    rng = np.random.default_rng(1)
    trained = summarize(rng.normal(size=(20000, 1)), ["x"])["x"]
    edges, reference = trained["edges"], trained["shares"]

    def psi_of(values):
        return psi(reference, shares(bin_index(values, edges), len(edges) + 1))

    assert psi_of(rng.normal(size=2000)) < 0.05
    assert psi_of(rng.normal(loc=1.0, size=2000)) > 0.25
    assert psi_of(np.full(100, 1e6)) > 1.0  # everything in the top bin: finite, large


def test_the_window_keeps_the_last_rows_and_reports_psi_per_feature():
    from serve_apps.monitor import DriftWindow

    rng = np.random.default_rng(2)
    training = rng.normal(size=(5000, 2))
    window = DriftWindow(summarize(training, ["a", "b"]), ["a", "b"], size=500)
    assert window.report(0.2)["window"] == 0
    window.observe(rng.normal(size=(300, 2)))
    shifted = rng.normal(size=(500, 2))
    shifted[:, 1] += 2.0  # b moves; a does not
    window.observe(shifted)
    report = window.report(0.2)
    assert report["window"] == 500  # only the newest 500 rows count
    assert report["features"]["a"]["drifted"] is False and report["features"]["a"]["psi"] < 0.1
    assert report["features"]["b"]["drifted"] is True and report["features"]["b"]["psi"] > 1.0
