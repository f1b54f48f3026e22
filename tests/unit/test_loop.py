"""The training loop on plain PyTorch engines, single process (no Ray, no DeepSpeed)."""

import pytest
import torch

from tests.helpers import Recorder, plain_trainer, without_timing
from trainers.engine.checkpoint import read_state
from trainers.loop.rounds import plan_rounds
from trainers.loop.trainer import TrainingDiverged
from trainers.models import load_model
from trainers.spec import FINAL_MODEL_DIR

make_trainer = plain_trainer  # the real loop on plain PyTorch engines


def test_both_strategies_get_the_same_budget():
    for kind in ("red_blue", "standard"):
        plan = plan_rounds(
            train_size=1000, batch_size=50, epochs=3, phase_steps=5, red_ratio=0.3, kind=kind
        )
        assert plan.num_rounds == 6
        assert sum(plan.steps_per_replica.values()) == 10
    red_blue = plan_rounds(
        train_size=1000, batch_size=50, epochs=3, phase_steps=5, red_ratio=0.3, kind="red_blue"
    )
    assert red_blue.steps_per_replica == {"red": 3, "blue": 7}


def test_extreme_ratio_keeps_both_replicas_training():
    plan = plan_rounds(
        train_size=100, batch_size=10, epochs=1, phase_steps=1, red_ratio=0.05, kind="red_blue"
    )
    assert plan.steps_per_replica == {"red": 1, "blue": 1}


@pytest.mark.parametrize("kind", ["red_blue", "standard"])
def test_trains_digits_and_reports_the_metric_names(tmp_path, kind):
    recorder = Recorder(tmp_path)
    outcome = make_trainer(
        recorder, strategy={"kind": kind}, optim={"lr": 0.003, "epochs": 8}
    ).run()
    assert outcome.metrics["test_accuracy"] >= 0.9
    first_round = recorder.metrics[0]
    if kind == "red_blue":
        for key in (
            "red/train_loss",
            "blue/train_loss",
            "red/val_loss",
            "blue/val_loss",
            "red/holdout_loss",
            "blue/holdout_loss",
            "val_loss",
            "fusion/alpha",
            "fusion/divergence",
            "lr",
        ):
            assert key in first_round, key
        assert {"red/test_accuracy", "blue/test_accuracy"} <= set(outcome.metrics)
    else:
        assert {"train_loss", "val_loss", "lr"} <= set(first_round)
    assert {"final_train_loss", "train_seconds"} <= set(outcome.metrics)
    assert outcome.metrics["final_train_loss"] < outcome.metrics["test_loss"]  # fitted P' better
    final_dir = recorder.checkpoints[-1] / FINAL_MODEL_DIR
    model, spec = load_model(final_dir)
    assert spec.classes == list(range(10))


def test_resume_continues_exactly(tmp_path):
    sections = dict(optim={"epochs": 4}, model={"dropout": 0.2}, checkpoint={"every_rounds": 2})
    full = Recorder(tmp_path / "full")
    expected = make_trainer(full, **sections).run().metrics

    first = Recorder(tmp_path / "first")
    make_trainer(first, **sections).run()
    resumed = Recorder(tmp_path / "resumed")
    trainer = make_trainer(resumed, **sections)
    torch.manual_seed(12345)  # a restarted process has other RNG state; the checkpoint restores it
    trainer.restore(first.checkpoints[0])
    assert trainer.state.next_round == 2
    got = trainer.run().metrics
    assert without_timing(got) == without_timing(expected)
    saved = read_state(first.checkpoints[0], 0).train_seconds  # the first two rounds' time
    assert 0 < saved < got["train_seconds"]
    assert resumed.metrics[0]["round"] == 3


def test_resume_takes_lr_and_weight_decay_from_the_config(tmp_path):
    """Population-based training restarts a trial from another's checkpoint with a new lr."""
    sections = dict(optim={"epochs": 4, "schedule": "cosine", "warmup_steps": 0, "lr": 0.01})
    first = Recorder(tmp_path / "first")
    make_trainer(first, **sections, checkpoint={"every_rounds": 2}).run()
    perturbed = {**sections["optim"], "lr": 0.004, "weight_decay": 0.05}
    resumed = Recorder(tmp_path / "resumed")
    trainer = make_trainer(resumed, optim=perturbed)
    trainer.restore(first.checkpoints[0])
    replica = trainer.replicas["red"]["model"]
    # same point of the cosine schedule, scaled to the new peak
    assert replica.lr() == pytest.approx(first.metrics[1]["lr"] * 0.4, rel=1e-6)
    assert {g["weight_decay"] for g in replica.optimizer.param_groups} == {0.05}
    trainer.run()
    assert resumed.metrics[0]["lr"] < first.metrics[2]["lr"]


def test_resume_refuses_another_split(tmp_path):
    first = Recorder(tmp_path)
    make_trainer(first, optim={"epochs": 2}, checkpoint={"every_rounds": 1}).run()
    other = make_trainer(Recorder(tmp_path / "o"), seed=1, optim={"epochs": 2})
    with pytest.raises(RuntimeError, match="different data split"):
        other.restore(first.checkpoints[0])


def test_nan_loss_names_the_round(tmp_path):
    recorder = Recorder(tmp_path)
    trainer = make_trainer(
        recorder,
        data={"source": "diabetes"},
        optim={"name": "sgd", "lr": 10, "warmup_steps": 40},
        strategy={"phase_steps": 2},
        checkpoint={"every_rounds": 1},
    )
    with pytest.raises(TrainingDiverged, match=r"round \d+") as caught:
        trainer.run()
    assert caught.value.round_number >= 2
    assert len(recorder.checkpoints) == caught.value.round_number - 1  # all good rounds kept


def test_early_stopping(tmp_path):
    recorder = Recorder(tmp_path)
    outcome = make_trainer(
        recorder, optim={"lr": 0.5, "name": "sgd", "epochs": 40, "patience": 1}
    ).run()
    assert outcome.stopped_early
    assert outcome.rounds_run < 40


NOISY = {"lr": 0.05, "epochs": 6, "schedule": "constant"}  # val_loss rises in the last round


def val_losses(recorder: Recorder) -> list[float]:
    return [m["val_loss"] for m in recorder.metrics if "round" in m]


def test_the_kept_model_is_the_best_evaluations(tmp_path):
    recorder = Recorder(tmp_path)
    trainer = make_trainer(recorder, optim=NOISY)
    final = trainer.run().metrics
    history = val_losses(recorder)
    best = min(range(len(history)), key=history.__getitem__)
    assert best < len(history) - 1, "the settings must make the last evaluation not the best"
    assert final["best_round"] == best + 1
    assert final["val_loss"] == pytest.approx(history[best], rel=1e-6)
    # the saved model is the one tested
    model, spec = load_model(recorder.checkpoints[-1] / FINAL_MODEL_DIR)
    test = trainer.split.test
    with torch.no_grad():
        outputs = model(trainer.features[test])
    assert float(trainer.objective.loss(outputs, trainer.labels[test])) == pytest.approx(
        final["test_loss"], rel=1e-5
    )


def test_select_last_keeps_the_final_rounds_model(tmp_path):
    recorder = Recorder(tmp_path)
    final = make_trainer(recorder, optim=NOISY, checkpoint={"select": "last"}).run().metrics
    history = val_losses(recorder)
    assert final["best_round"] == len(history)
    assert final["val_loss"] == pytest.approx(history[-1], rel=1e-6)


def test_early_stopping_restores_the_best_model(tmp_path):
    recorder = Recorder(tmp_path)
    outcome = make_trainer(recorder, optim={**NOISY, "epochs": 20, "patience": 1}).run()
    history = val_losses(recorder)
    assert outcome.stopped_early
    assert outcome.metrics["best_round"] == len(history) - 1
    assert outcome.metrics["val_loss"] == pytest.approx(min(history), rel=1e-6)


def test_both_strategies_follow_the_same_schedule_on_the_round_clock(tmp_path):
    optim = {"schedule": "step", "step_every": 20, "step_gamma": 0.5, "warmup_steps": 30}
    lrs = {}
    for kind in ("red_blue", "standard"):
        recorder = Recorder(tmp_path / kind)
        make_trainer(recorder, strategy={"kind": kind, "red_ratio": 0.3}, optim=optim).run()
        rounds = [m for m in recorder.metrics if "round" in m]
        lrs[kind] = [m["lr"] for m in rounds]
        if kind == "red_blue":
            assert [m["red/lr"] for m in rounds] == [m["blue/lr"] for m in rounds] == lrs[kind]
    assert lrs["red_blue"] == pytest.approx(lrs["standard"], rel=1e-12)
    assert len(set(lrs["standard"])) > 3  # warm-up and decays happened


def test_eval_every_evaluates_every_nth_round_and_fuses_in_between(tmp_path):
    """``strategy.eval_every: 3`` evaluates rounds 3, 6, ... and the last; ``fuse_every: 2`` still
    fuses in round 2, which has no evaluation (alpha from the held-out losses of then): the
    checkpoint written after it holds one model in red and in blue."""
    recorder = Recorder(tmp_path)
    make_trainer(
        recorder,
        strategy={"eval_every": 3, "fuse_every": 2, "fusion": "loss"},
        optim={"epochs": 6},
        checkpoint={"every_rounds": 2},
    ).run()
    rounds = [m for m in recorder.metrics if "round" in m]
    last = int(rounds[-1]["round"])
    assert last > 6
    evaluated = [int(m["round"]) for m in rounds if "val_loss" in m]
    assert evaluated == [r for r in range(1, last + 1) if r % 3 == 0 or r == last]
    after_round_2 = recorder.checkpoints[0]
    red = torch.load(after_round_2 / "red.pt", weights_only=True)["model"]
    blue = torch.load(after_round_2 / "blue.pt", weights_only=True)["model"]
    assert all(torch.equal(red[key], blue[key]) for key in red)
    after_round_4 = torch.load(recorder.checkpoints[1] / "red.pt", weights_only=True)["model"]
    assert any(not torch.equal(red[key], after_round_4[key]) for key in red)  # it trained on
