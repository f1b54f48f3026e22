import pytest

from trainers.schedules import lr_multiplier


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
