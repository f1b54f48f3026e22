"""``deepspeed.zero_stage: auto``: the ZeRO stage chosen from the size of the model's training
state, the same on every worker, trial and resume.

A step under ZeRO-1/2/3 issues several collectives (the gradients' reduce-scatter, a
gradient-norm all-reduce, the parameters' all-gather) where ZeRO-0 issues one all-reduce of the
gradients, so a small model under ZeRO-2 trains at about 0.6x plain DDP and under ZeRO-0 at DDP's
speed or better (docs/benchmarks.md). ZeRO only pays when the state would not fit a worker.

The rule uses fixed sizes, not the memory of the machine that plans the run: a trial on another
node, or a resume on another machine, must pick the stage the checkpoint was written at.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from trainers.loop.plan import RunPlan

GIB = 1024**3
# Training state a worker holds per parameter without ZeRO: fp32 weights, gradients and Adam's
# two moments (16 bytes); with bf16 or fp16 also the low-precision weights and gradients.
STATE_BYTES = {"fp32": 16, "bf16": 20, "fp16": 20}
WEIGHT_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}
WHOLE_STATE_LIMIT = 1 * GIB  # ZeRO-0 up to this much state per worker
SHARDED_STATE_LIMIT = 4 * GIB  # ZeRO-2 up to this much per worker; ZeRO-3 past it


@dataclass(frozen=True)
class ZeroChoice:
    stage: int
    reason: str  # for the run's start line and the MLflow tag redblue.zero_stage_reason


def choose_zero_stage(
    parameters: int, *, precision: str, world: int, offload: bool, highest: int = 3
) -> ZeroChoice:
    """The stage for ``parameters`` trained by ``world`` workers; ``highest`` is 2 for models
    that need whole weights in their forward or backward pass."""
    whole = parameters * STATE_BYTES[precision]
    size = f"{whole / 1e6:,.1f} MB of training state"
    if whole <= WHOLE_STATE_LIMIT and not offload:
        return ZeroChoice(0, f"auto: {size}, within {WHOLE_STATE_LIMIT // GIB} GiB a worker")
    weights = parameters * WEIGHT_BYTES[precision]
    sharded = weights + (whole - weights) / world
    if sharded <= SHARDED_STATE_LIMIT or highest < 3:
        why = "optimizer offload needs ZeRO" if offload and whole <= WHOLE_STATE_LIMIT else size
        return ZeroChoice(2, f"auto: {why}; ZeRO-2 shards gradients and optimizer state")
    return ZeroChoice(3, f"auto: {size}; ZeRO-3 shards the weights too")


def highest_stage(model: dict[str, Any]) -> int:
    """2 for the models that cannot run under ZeRO-3 (whole weights in the forward pass for the
    l1/l2 penalties; the gradient penalty's double backward), else 3."""
    whole_weights = model.get("l1", 0) or model.get("l2", 0) or model.get("loss") == "wgan_gp"
    return 2 if whole_weights else 3


def resolve_zero_stage(plan: RunPlan, model: dict[str, Any], world: int) -> tuple[RunPlan, str]:
    """``plan`` with its ZeRO stage decided, and why; a configured stage is kept as it is."""
    ds = plan.loop.deepspeed
    if ds.zero_stage != "auto":
        return plan, "configured"
    from trainers.models import parameters_in

    choice = choose_zero_stage(
        parameters_in(plan.spec),
        precision=ds.precision,
        world=world,
        offload=ds.offload != "none",
        highest=highest_stage(model),
    )
    loop = replace(plan.loop, deepspeed=ds.model_copy(update={"zero_stage": choice.stage}))
    return replace(plan, loop=loop), choice.reason
