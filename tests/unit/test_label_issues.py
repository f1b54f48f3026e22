"""Red-blue's cross-predictions and the label issues they find (``strategy.clean``): the
confident-learning rule on hand-made probabilities, cross-predictions that are out-of-sample, the
training weights, the noise users have, and exact resume (plain engines here; real DeepSpeed
engines under ZeRO-3 and bf16 in tests/integration/test_recurrent_engines.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.helpers import Recorder, plain_trainer, without_timing
from trainers.dataset import Split
from trainers.engine.checkpoint import LoopState
from trainers.families.tabular_net import Supervised
from trainers.loop.confident_learning import (
    confident_joint,
    find_label_issues,
    per_class_thresholds,
)
from trainers.loop.cross_predictions import CrossPredictions
from trainers.spec import LABEL_ISSUES_FILE


def probabilities_of(true: np.ndarray, confidence: float, classes: int = 3) -> np.ndarray:
    """Each row puts ``confidence`` on its true class, the rest spread evenly."""
    rest = (1 - confidence) / (classes - 1)
    out = np.full((len(true), classes), rest)
    out[np.arange(len(true)), true] = confidence
    return out


def test_the_rule_finds_the_flipped_rows_and_nothing_else():
    true = np.repeat([0, 1, 2], 20)
    given = true.copy()
    flipped = np.array([3, 25, 47, 50])
    given[flipped] = (given[flipped] + 1) % 3
    flagged = find_label_issues(probabilities_of(true, 0.8), given)
    assert set(np.flatnonzero(flagged)) == set(flipped)


def test_per_class_thresholds_are_the_mean_self_confidence_of_each_given_class():
    probabilities = np.array([[0.9, 0.1], [0.7, 0.3], [0.2, 0.8], [0.4, 0.6]])
    labels = np.array([0, 0, 1, 1])
    assert per_class_thresholds(probabilities, labels) == pytest.approx([0.8, 0.7])
    # A class given to no row takes none: nothing is counted into it.
    assert per_class_thresholds(probabilities, np.array([0, 0, 0, 0]))[1] == np.inf


def test_the_confident_joint_is_calibrated_to_the_given_counts():
    true = np.repeat([0, 1], 10)
    given = true.copy()
    given[[0, 1]] = 1  # two rows of class 0 given label 1
    joint = confident_joint(probabilities_of(true, 0.9, classes=2), given)
    assert joint.sum(axis=1) == pytest.approx(np.bincount(given))
    assert joint[1, 0] == pytest.approx(2 * 12 / 12)  # the 2 flips, of the 12 given label 1


def test_a_row_whose_given_label_is_the_most_probable_is_never_flagged():
    probabilities = np.array([[0.55, 0.45], [0.9, 0.1], [0.1, 0.9], [0.45, 0.55]])
    flagged = find_label_issues(probabilities, np.array([0, 0, 1, 1]))
    assert not flagged.any()


def test_at_most_the_maximum_fraction_of_each_half_is_flagged_the_most_confident_kept():
    true = np.repeat([0, 1], 20)
    given = true.copy()
    given[:8] = 1  # 8 of 20 rows of class 0 flipped, all in the first group
    probabilities = probabilities_of(true, 0.9, classes=2)
    probabilities[:8, 0] = np.linspace(0.99, 0.92, 8)  # row 0 the most confident issue
    probabilities[:8, 1] = 1 - probabilities[:8, 0]
    groups = [np.arange(0, 10), np.arange(10, 40)]
    flagged = find_label_issues(probabilities, given, groups, max_fraction=0.3)
    assert np.flatnonzero(flagged).tolist() == [0, 1, 2]  # 30% of 10, the most confident


def split_of(red: list[int], blue: list[int]) -> Split:
    empty = np.array([], dtype=np.int64)
    return Split(test=empty, val=empty, red=np.array(red), blue=np.array(blue))


def test_a_row_is_unflagged_when_its_cross_predictions_change_and_its_first_round_reset():
    true = np.repeat([0, 1], 10)
    given = true.copy()
    given[0] = 1
    cross = CrossPredictions.start(split_of(list(range(0, 20, 2)), list(range(1, 20, 2))), 2)
    cross.record(np.arange(20), probabilities_of(true, 0.9, classes=2))
    cross.flag(given, max_fraction=1.0, round_number=3)
    assert np.flatnonzero(cross.flagged).tolist() == [0]
    assert cross.first_flagged[0] == 3
    cross.flag(given, max_fraction=1.0, round_number=4)
    assert cross.first_flagged[0] == 3  # still flagged since round 3
    agrees = probabilities_of(given, 0.9, classes=2)  # now row 0's label looks right
    for _ in range(6):  # the average moves halfway each evaluation
        cross.record(np.arange(20), agrees)
    cross.flag(given, max_fraction=1.0, round_number=5)
    assert not cross.flagged.any() and cross.first_flagged[0] == 0


def test_cross_predictions_average_each_evaluation_in_by_half():
    cross = CrossPredictions.start(split_of([0], [1]), 2)
    cross.record(np.array([1]), np.array([[1.0, 0.0]]))
    cross.record(np.array([1]), np.array([[0.0, 1.0]]))
    assert cross.probabilities[1] == pytest.approx([0.5, 0.5])
    assert np.isnan(cross.probabilities[0]).all()  # red's row not scored yet


def test_pruned_rows_contribute_zero_gradient():
    torch.manual_seed(0)
    net = torch.nn.Linear(4, 3)
    features, targets = torch.randn(8, 4), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    objective = Supervised("classification")
    weights = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0, 1.0])
    objective._weighted_loss(net(features), targets, weights).backward()
    pruned = [p.grad.clone() for p in net.parameters()]
    net.zero_grad()
    kept = weights > 0
    objective.loss(net(features[kept]), targets[kept]).backward()
    for got, expected in zip(pruned, (p.grad for p in net.parameters()), strict=True):
        assert torch.allclose(got, expected, atol=1e-6)
    net.zero_grad()
    loss = objective._weighted_loss(net(features), targets, torch.zeros(8))
    loss.backward()
    assert float(loss.detach()) == 0.0 and all(
        float(p.grad.abs().sum()) == 0.0 for p in net.parameters()
    )


NOISY = {"data": {"label_noise": 0.3}, "optim": {"epochs": 10}}


def test_each_replica_scores_only_the_other_half(tmp_path):
    """A replica never scores its own rows: each evaluation's cross-predictions of red's half
    come from blue and blue's from red. Without fusion and with a long budget each replica
    memorises its own half, noisy labels included: the same rule on its in-sample probabilities
    finds few of them, the cross-predictions most."""
    trainer = plain_trainer(
        Recorder(tmp_path),
        data={"label_noise": 0.3},
        optim={"epochs": 30, "lr": 0.01},
        strategy={"clean": "report", "fuse_every": 0},
        model={"hidden": [128]},
    )
    scored: list[tuple[str, np.ndarray]] = []
    in_sample: dict[str, np.ndarray] = {}
    score = trainer.evaluator._cross_loss

    def spy(replica, other_half):
        name = "red" if replica is trainer.replicas["red"] else "blue"
        scored.append((name, other_half))
        own, _ = trainer.evaluator.predict(replica, getattr(trainer.split, name))
        in_sample[name] = torch.softmax(own, dim=-1).numpy()
        return score(replica, other_half)

    trainer.evaluator._cross_loss = spy
    metrics = trainer.run().metrics
    split = trainer.split
    assert scored and all(
        np.array_equal(rows, split.blue if name == "red" else split.red) for name, rows in scored
    )
    assert metrics["label_issues/recall"] >= 0.8 and metrics["label_issues/precision"] >= 0.5
    rows = np.concatenate([split.red, split.blue])
    labels = trainer.cleaning.dataset.labels[rows]
    own_flags = find_label_issues(np.concatenate([in_sample["red"], in_sample["blue"]]), labels)
    noisy = np.isin(rows, trainer.cleaning.noisy_rows)
    assert (own_flags & noisy).sum() / noisy.sum() < 0.1  # memorised: in-sample finds few


def test_prune_trains_without_the_flagged_rows_and_writes_the_report(tmp_path):
    recorder = Recorder(tmp_path)
    trainer = plain_trainer(recorder, strategy={"clean": "prune"}, **NOISY)
    metrics = trainer.run().metrics
    assert metrics["label_issues/precision"] >= 0.7 and metrics["label_issues/recall"] >= 0.5
    weights = trainer.cleaning.row_weights
    flagged_rows = trainer.cleaning.cross.rows[trainer.cleaning.cross.flagged]
    assert (weights[flagged_rows] == 0).all() and int((weights == 0).sum()) == len(flagged_rows)
    import pandas as pd

    report = pd.read_csv(recorder.checkpoints[-1] / LABEL_ISSUES_FILE)
    assert list(report.columns) == [
        "row",
        "given_label",
        "suggested_label",
        "p_given",
        "first_flagged_round",
    ]
    assert len(report) == metrics["label_issues/count"]
    assert report.p_given.is_monotonic_increasing  # the most confident issues first
    assert (report.given_label != report.suggested_label).all()
    rounds = [m["round"] for m in recorder.metrics if "round" in m]
    flagging = [m["round"] for m in recorder.metrics if "round" in m and "label_issues/count" in m]
    assert flagging and min(flagging) > 0.3 * max(rounds)  # strategy.clean_start


def test_weight_multiplies_each_rows_loss_by_its_probability_of_its_label(tmp_path):
    trainer = plain_trainer(Recorder(tmp_path), strategy={"clean": "weight"}, **NOISY)
    trainer.run()
    cleaning = trainer.cleaning
    cross = cleaning.cross
    expected = cross.probabilities[np.arange(len(cross.rows)), cleaning.given]
    assert np.allclose(cleaning.row_weights[cross.rows].numpy(), expected)


def test_resume_with_cleaning_continues_exactly(tmp_path):
    sections = dict(
        NOISY,
        strategy={"clean": "prune", "clean_start": 0.2},
        checkpoint={"every_rounds": 4},
    )
    expected = plain_trainer(Recorder(tmp_path / "full"), **sections).run().metrics
    first = Recorder(tmp_path / "first")
    plain_trainer(first, **sections).run()
    assert (first.checkpoints[1] / "cross_predictions_rank0.npz").exists()
    resumed = plain_trainer(Recorder(tmp_path / "resumed"), **sections)
    torch.manual_seed(12345)
    resumed.restore(first.checkpoints[1])  # after round 8, cleaning under way
    assert resumed.cleaning.cross.active
    assert without_timing(resumed.run().metrics) == without_timing(expected)


def test_pair_noise_moves_each_class_to_the_next_and_scope_reaches_v(tmp_path):
    from orchestrator.config import RedblueConfig
    from trainers.loop.plan import plan_run

    def plan(**data):
        cfg = RedblueConfig.model_validate({"data": data, "scaling": {"num_workers": 1}})
        return plan_run(cfg)

    clean = plan()
    pairs = plan(label_noise=0.2, label_noise_kind="pairs", label_noise_scope="pool_and_val")
    changed = np.flatnonzero(pairs.dataset.labels != clean.dataset.labels)
    train, val = clean.split.train, clean.split.val
    assert np.array_equal(pairs.noisy_rows, changed[np.isin(changed, train)])
    assert len(pairs.noisy_rows) == round(0.2 * len(train))
    assert np.isin(changed, val).sum() == round(0.2 * len(val))
    assert not np.isin(changed, clean.split.test).any()  # T stays clean
    expected = (clean.dataset.labels[changed] + 1) % 10
    assert np.array_equal(pairs.dataset.labels[changed], expected)
    pool_only = plan(label_noise=0.2)
    assert not np.isin(np.flatnonzero(pool_only.dataset.labels != clean.dataset.labels), val).any()


def test_val_loss_jitter_is_the_mean_change_over_the_second_half():
    state = LoopState(val_losses=[9.0, 9.0, 1.0, 1.5, 1.0, 1.25])
    assert state.jitter() == {"val_loss_jitter": pytest.approx((0.5 + 0.25) / 2)}
    assert LoopState(val_losses=[1.0, 2.0]).jitter() == {}  # a second half of one evaluation


def test_the_linear_family_cleans_too(tmp_path):
    """Every family that classifies takes strategy.clean (the GRU and the MLP on real engines:
    tests/integration/test_recurrent_engines.py)."""
    trainer = plain_trainer(
        Recorder(tmp_path), model={"kind": "linear"}, strategy={"clean": "prune"}, **NOISY
    )
    metrics = trainer.run().metrics
    assert metrics["label_issues/precision"] >= 0.7 and metrics["label_issues/recall"] >= 0.5
