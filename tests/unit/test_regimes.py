"""The study regimes change the training data only: ``data.label_noise`` and
``data.train_fraction`` never touch the test part T or the validation slice V."""

from __future__ import annotations

import numpy as np
import pytest

from orchestrator.config import ConfigError, RedblueConfig, validate
from trainers.loop.plan import plan_run


def plan(source="digits", **data):
    cfg = RedblueConfig.model_validate({"data": {"source": source, **data}})
    return plan_run(cfg)


@pytest.mark.parametrize("source", ["digits", "diabetes"])
def test_label_noise_replaces_that_fraction_of_the_training_labels_only(source):
    clean, noisy = plan(source), plan(source, label_noise=0.2)
    assert noisy.split.fingerprint() == clean.split.fingerprint()
    changed = clean.dataset.labels != noisy.dataset.labels
    train = clean.split.train
    assert not changed[clean.split.test].any() and not changed[clean.split.val].any()
    expected = round(0.2 * len(train))
    if source == "digits":  # another class every time
        assert changed[train].sum() == expected
    else:  # another row's value: rarely the same number
        assert expected - 3 <= changed[train].sum() <= expected
        assert set(noisy.dataset.labels[train]) <= set(clean.dataset.labels[train])
    assert (plan(source, label_noise=0.2).dataset.labels == noisy.dataset.labels).all()
    reseeded = plan_run(RedblueConfig.model_validate({"seed": 1, "data": {"source": source}}))
    assert reseeded.split.fingerprint() != clean.split.fingerprint()


def test_train_fraction_keeps_a_stratified_fraction_of_red_and_blue():
    whole, small = plan(), plan(train_fraction=0.1)
    np.testing.assert_array_equal(small.split.test, whole.split.test)
    np.testing.assert_array_equal(small.split.val, whole.split.val)
    for name in ("red", "blue"):
        kept, part = getattr(small.split, name), getattr(whole.split, name)
        assert set(kept) < set(part)
        assert len(kept) == pytest.approx(0.1 * len(part), abs=1)
        labels = whole.dataset.labels
        assert set(labels[kept]) == set(labels[part])  # every class keeps its share
    assert small.rounds.num_rounds < whole.rounds.num_rounds  # epochs are passes over the rest


def test_both_together_add_noise_within_the_kept_fraction():
    clean, both = plan(train_fraction=0.5), plan(train_fraction=0.5, label_noise=0.3)
    changed = np.flatnonzero(clean.dataset.labels != both.dataset.labels)
    assert set(changed) <= set(both.split.train)
    assert len(changed) == round(0.3 * len(both.split.train))


@pytest.mark.parametrize(
    "data, message",
    [
        ({"label_noise": 1.0}, "data.label_noise: Input should be less than 1"),
        ({"label_noise": -0.1}, "data.label_noise: Input should be greater than or equal to 0"),
        ({"train_fraction": 0.0}, "data.train_fraction: Input should be greater than 0"),
        ({"train_fraction": 1.5}, "data.train_fraction: Input should be less than or equal to 1"),
    ],
)
def test_out_of_range_values_are_refused(data, message):
    with pytest.raises(ConfigError, match=message):
        validate({"data": data})


def test_the_regimes_are_logged_as_params():
    flat = validate({"data": {"label_noise": 0.2, "train_fraction": 0.1}}).flat()
    assert flat["data.label_noise"] == 0.2 and flat["data.train_fraction"] == 0.1
