"""deepspeed.zero_stage: auto picks the documented stage from the size of the training state."""

from __future__ import annotations

import pytest

from orchestrator.config import RedblueConfig
from trainers.loop.plan import plan_run
from trainers.loop.zero_stage import GIB, choose_zero_stage, highest_stage, resolve_zero_stage
from trainers.models import parameters_in


def stage(parameters, precision="fp32", world=2, offload=False, highest=3):
    return choose_zero_stage(
        parameters, precision=precision, world=world, offload=offload, highest=highest
    ).stage


def test_a_state_within_1_gib_a_worker_trains_without_zero():
    assert stage(1_000) == 0
    assert stage(GIB // 16) == 0  # fp32: 16 bytes a parameter, exactly 1 GiB
    assert stage(GIB // 16 + 1) == 2
    assert stage(GIB // 20) == 0 and stage(GIB // 20 + 1, precision="bf16") == 2


def test_past_4_gib_sharded_the_weights_are_sharded_too():
    # fp32 on 2 workers under ZeRO-2: 4 bytes of weights + 12 / 2 of the rest = 10 a parameter
    limit = 4 * GIB // 10
    assert stage(limit) == 2
    assert stage(limit + 10) == 3
    assert stage(limit + 10, world=8) == 2  # 4 + 12 / 8 = 5.5 bytes a parameter
    assert stage(10 * limit, highest=2) == 2  # models that need whole weights stay at 2


def test_optimizer_offload_takes_zero2_whatever_the_size():
    choice = choose_zero_stage(1_000, precision="fp32", world=2, offload=True)
    assert choice.stage == 2 and "offload" in choice.reason


def test_models_needing_whole_weights_cap_the_stage_at_2():
    assert highest_stage({"kind": "mlp", "hidden": [64]}) == 3
    assert highest_stage({"kind": "linear", "l1": 0.01, "l2": 0.0}) == 2
    assert highest_stage({"kind": "gan", "loss": "wgan_gp"}) == 2
    assert highest_stage({"kind": "gan", "loss": "hinge"}) == 3


@pytest.mark.parametrize("configured", ["auto", 2])
def test_the_plan_carries_the_decided_stage_and_why(configured):
    cfg = RedblueConfig.model_validate(
        {"data": {"source": "digits"}, "deepspeed": {"zero_stage": configured}}
    )
    plan, why = resolve_zero_stage(plan_run(cfg), cfg.model.model_dump(), 2)
    if configured == "auto":
        megabytes = parameters_in(plan.spec) * 16 / 1e6
        assert plan.loop.deepspeed.zero_stage == 0
        assert why.startswith(f"auto: {megabytes:,.1f} MB of training state")
    else:
        assert (plan.loop.deepspeed.zero_stage, why) == (2, "configured")
