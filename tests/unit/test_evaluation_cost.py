"""An evaluation's cost is bounded (``strategy.eval_rows``): large parts are scored in slices
that cover them in turn, val_loss is always on all of V, and an epoch's batches cost O(batch)."""

from __future__ import annotations

import numpy as np
import torch

from tests.helpers import Recorder, plain_trainer, without_timing
from trainers.data.batches import batch_indices
from trainers.dataset import Split
from trainers.loop.evaluation import Slices

SLICED = dict(strategy={"eval_rows": 64}, optim={"epochs": 6}, checkpoint={"every_rounds": 2})


def test_slices_cover_each_part_in_turn_without_overlap():
    split = Split(
        test=np.arange(5), val=np.arange(5, 205), red=np.arange(205, 305), blue=np.arange(305, 333)
    )
    slices = Slices.of(split, rows=64, seed=0)
    assert (slices.count("val"), slices.count("red"), slices.count("blue")) == (4, 2, 1)
    taken = [slices.take("val", e) for e in range(4)]
    assert all(len(t) <= 64 for t in taken)
    assert np.array_equal(np.sort(np.concatenate(taken)), split.val)  # all of V, once
    assert np.array_equal(slices.take("val", 4), taken[0])  # then around again
    assert [slices.decision_due(e) for e in range(8)] == [False, False, False, True] * 2
    assert [slices.halves_covered(e) for e in range(4)] == [False, True] * 2  # red: 2 slices
    assert np.array_equal(slices.take("blue", 3), split.blue)  # a part that fits: all, always


def test_evaluations_score_at_most_eval_rows_and_decide_on_all_of_v(tmp_path):
    recorder = Recorder(tmp_path)
    trainer = plain_trainer(recorder, **SLICED)
    scored: list[int] = []
    predict = trainer.evaluator.predict

    def counting(replica, index):
        scored.append(len(index))
        return predict(replica, index)

    trainer.evaluator.predict = counting
    metrics = trainer.run().metrics
    val_size = len(trainer.split.val)  # 144 rows: 3 slices of at most 64
    rounds = [m for m in recorder.metrics if "round" in m]
    decisions = [m for m in rounds if "val_loss" in m]
    assert all("val/slice_loss" in m for m in rounds if "val_loss" not in m)
    assert [m["round"] for m in decisions][:-1] == [3.0 * i for i in range(1, len(decisions))]
    assert decisions[-1]["round"] == len(rounds)  # the last evaluation always decides
    during_rounds = scored[:-5]  # the end scores T (red, blue, fused), V and P' in full
    assert set(during_rounds) <= set(range(65)) | {val_size}
    assert metrics["test_accuracy"] > 0.85  # it learned; the figures of a full run: test_loop.py


def test_resume_between_decisions_continues_exactly(tmp_path):
    expected = plain_trainer(Recorder(tmp_path / "full"), **SLICED).run().metrics
    first = Recorder(tmp_path / "first")
    plain_trainer(first, **SLICED).run()
    resumed = plain_trainer(Recorder(tmp_path / "resumed"), **SLICED)
    torch.manual_seed(12345)
    resumed.restore(first.checkpoints[0])  # after round 2: the next evaluation is V's third slice
    assert resumed.state.evaluations == 2
    assert without_timing(resumed.run().metrics) == without_timing(expected)


def test_cleaning_flags_from_slices_once_they_covered_the_halves(tmp_path):
    trainer = plain_trainer(
        Recorder(tmp_path),
        data={"label_noise": 0.3},
        strategy={"clean": "prune", "eval_rows": 128},
        optim={"epochs": 10},
    )
    recorder = trainer.report
    metrics = trainer.run().metrics
    assert len(trainer.cleaning.cross.scored) == len(trainer.split.train)  # every row, in turn
    flagged = [m["round"] for m in recorder.metrics if "label_issues/count" in m and "round" in m]
    turn = trainer.evaluator.slices.count("blue")  # blue, the larger half: 6 slices of 128
    assert flagged and all(r % turn == 0 for r in flagged)  # once per turn over the halves
    assert metrics["label_issues/precision"] >= 0.7 and metrics["label_issues/recall"] >= 0.5


def test_a_batch_reads_its_epochs_order_once():
    part = np.arange(10_000)
    first = [batch_indices(part, 100, b, (0, 1, 0)) for b in range(100)]
    assert np.array_equal(np.sort(np.concatenate(first)), part)  # one epoch: every row once
    again = batch_indices(part, 100, 5, (0, 1, 0))
    assert np.array_equal(again, first[5])  # stateless: the same batch again
    assert not np.array_equal(batch_indices(part, 100, 105, (0, 1, 0)), first[5])  # next epoch
