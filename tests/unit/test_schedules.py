import pytest

from trainers.engine.schedules import lr_multiplier


def m(step, schedule, **kw):
    args = dict(schedule=schedule, total_steps=100, warmup_steps=0, step_every=10, step_gamma=0.5)
    args.update(kw)
    return lr_multiplier(step, **args)


def test_constant_and_warmup():
    assert m(50, "constant") == 1.0
    assert m(0, "constant", warmup_steps=4) == pytest.approx(0.2)
    assert m(3, "constant", warmup_steps=4) == pytest.approx(0.8)
    assert m(4, "constant", warmup_steps=4) == 1.0


def test_step_decay():
    assert [m(s, "step") for s in (0, 9, 10, 25)] == [1.0, 1.0, 0.5, 0.25]


def test_cosine_goes_from_one_to_zero():
    assert m(0, "cosine") == 1.0
    assert m(50, "cosine") == pytest.approx(0.5)
    assert m(100, "cosine") == pytest.approx(0.0)
    assert m(150, "cosine") == pytest.approx(0.0)


def test_unknown_schedule():
    with pytest.raises(ValueError):
        m(0, "linear")


def test_a_replicas_steps_sit_on_the_round_clock():
    from trainers.config import OptimConfig
    from trainers.engine.clock import RunClock
    from trainers.engine.schedules import clock_multiplier

    red = RunClock(round_steps=20, replica_steps=7, num_rounds=5)  # K_red 7 of 2K = 20
    assert red.position(7) == 20 and red.total == 100  # exact at the end of each round
    cfg = OptimConfig(schedule="step", step_every=20, step_gamma=0.5, warmup_steps=0)
    # the decay at step 20 of the clock comes after red's 7th step, whatever the rounding
    assert clock_multiplier(6, clock=red, cfg=cfg) == 1.0
    assert clock_multiplier(7, clock=red, cfg=cfg) == 0.5
    assert clock_multiplier(14, clock=red, cfg=cfg) == 0.25
