import pytest
import torch

from trainers.config import OptimConfig
from trainers.engine.clock import RunClock
from trainers.engine.fusion import (
    divergence,
    fuse_into_both,
    fuse_tensors,
    fused_view,
    fusion_alpha,
)
from trainers.engine.plain import PlainEngine
from trainers.models import build_model
from trainers.spec import ModelSpec


def replica(seed: int) -> dict[str, PlainEngine]:
    """One replica (a member with the MLP family's one network)."""
    torch.manual_seed(seed)
    spec = ModelSpec("mlp", "classification", 4, 3, {"hidden": [8]}, classes=[0, 1, 2])
    engine = PlainEngine(
        build_model(spec), optim=OptimConfig(), grad_accum_steps=1, clock=RunClock(2, 2, 5)
    )
    return {"model": engine}


def masters(member: dict[str, PlainEngine]) -> list[torch.Tensor]:
    return member["model"].masters().tensors


@pytest.mark.parametrize(
    "rule, red, blue, expected",
    [
        ("uniform", 1.0, 9.0, 0.5),
        ("ratio", 1.0, 9.0, 0.3),
        ("loss", 1.0, 3.0, 0.75),  # red better: weighs more, clipped at 0.75
        ("loss", 2.0, 2.0, 0.5),
        ("loss", 9.0, 1.0, 0.25),  # clipped below
        ("loss", 0.0, 0.0, 0.5),  # degenerate: uniform
    ],
)
def test_fusion_alpha(rule, red, blue, expected):
    alpha = fusion_alpha(rule, red_ratio=0.3, red_holdout=red, blue_holdout=blue)
    assert alpha == pytest.approx(expected)


def test_fuse_tensors_is_the_weighted_average():
    red, blue = [torch.tensor([1.0, 2.0])], [torch.tensor([3.0, 6.0])]
    assert torch.allclose(fuse_tensors(0.25, red, blue)[0], torch.tensor([2.5, 5.0]))
    half = fuse_tensors(0.5, [torch.tensor([1.0], dtype=torch.bfloat16)], [torch.tensor([3.0])])
    assert half[0].dtype == torch.bfloat16 and half[0].item() == 2.0


def test_fuse_into_both_writes_theta_f_into_both_replicas():
    red, blue = replica(0), replica(1)
    expected = fuse_tensors(0.3, masters(red), masters(blue))
    fuse_into_both(red, blue, 0.3)
    for r, b, e in zip(masters(red), masters(blue), expected, strict=True):
        assert torch.equal(r, e) and torch.equal(b, e)
    assert divergence(red, blue, 0.5) == 0.0


def test_fused_view_restores_red():
    red, blue = replica(0), replica(1)
    before = [t.clone() for t in masters(red)]
    with fused_view(red, blue, 0.5) as fused:
        assert not torch.equal(masters(fused)[0], before[0])
    assert all(torch.equal(a, b) for a, b in zip(masters(red), before, strict=True))


def test_divergence_is_relative_distance():
    red, blue = replica(0), replica(1)
    value = divergence(red, blue, 0.5)
    assert 0.5 < value < 5.0
