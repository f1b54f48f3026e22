"""A GAN's two DeepSpeed engines per replica, two gloo processes: every ZeRO stage, fp32 and
bf16, the three losses, red-blue and standard. Each run resumes exactly from its first checkpoint,
both ranks agree, and in fp32 the stages compute the same model (ZeRO partitions the optimizer,
it does not change the arithmetic)."""

from __future__ import annotations

import json

import pytest
import torch.multiprocessing as mp

from orchestrator.environment import free_port
from tests import recurrent_check

pytestmark = pytest.mark.integration

# A third of the training pool: the checks are of exactness, not of what a GAN learns.
DATA = {
    "digits": {
        "data": {"source": "digits", "train_fraction": 0.35},
        "optim": {"epochs": 3, "batch_size": 32},
    }
}
DATA["digits-bf16"] = {**DATA["digits"], "deepspeed": {"precision": "bf16"}}
NETS = {"generator": [32], "discriminator": [32]}
MODELS = {
    "hinge": {"kind": "gan", **NETS},
    "wgan_gp": {"kind": "gan", "loss": "wgan_gp", "d_steps": 2, **NETS},
    "bce": {"kind": "gan", "loss": "bce", "conditional": False, **NETS},
}
SETTINGS = [
    ("hinge", "red_blue", 0, "digits"),
    ("hinge", "red_blue", 3, "digits"),
    ("hinge", "red_blue", 1, "digits-bf16"),
    ("wgan_gp", "standard", 0, "digits"),
    ("wgan_gp", "standard", 1, "digits"),
    ("wgan_gp", "red_blue", 2, "digits-bf16"),
    ("bce", "standard", 0, "digits"),
    ("bce", "standard", 3, "digits"),
    ("bce", "red_blue", 3, "digits-bf16"),
]


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    out = tmp_path_factory.mktemp("gan")
    args = (2, free_port(), str(out), SETTINGS, (DATA, MODELS))
    mp.spawn(recurrent_check.run, args=args, nprocs=2, join=True)
    return [json.loads((out / f"rank{rank}.json").read_text()) for rank in (0, 1)]


@pytest.mark.parametrize("loss, strategy, stage, data", SETTINGS)
def test_two_engines_per_replica_train_and_resume_exactly(measured, loss, strategy, stage, data):
    name = f"{loss}-{strategy}-{stage}-{data}"
    first, second = measured[0][name], measured[1][name]
    assert first["rounds"] >= 3  # a checkpoint every 2 rounds: the resumed run trained on
    assert first["resumed"] == first["full"] and second == first
    metrics = first["full"]
    assert metrics["test_fd"] > 0 and metrics["test_fd_real"] > 0
    assert ("test_label_accuracy" in metrics) == (loss != "bce")


@pytest.mark.parametrize(
    "loss, strategy, stage",
    [("hinge", "red_blue", 3), ("bce", "standard", 3), ("wgan_gp", "standard", 1)],
)
def test_a_partitioned_stage_computes_what_zero_0_computes(measured, loss, strategy, stage):
    """The generator's backward through the frozen discriminator (and wgan_gp's double backward
    under ZeRO-1) give the model that unpartitioned engines give."""
    plain, partitioned = (measured[0][f"{loss}-{strategy}-{s}-digits"] for s in (0, stage))
    assert partitioned["full"]["test_fd"] == pytest.approx(plain["full"]["test_fd"], rel=1e-4)
