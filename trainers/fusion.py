"""Fusion of the red and blue replicas: theta_f = alpha * theta_red + (1 - alpha) * theta_blue.

Works on the tensors each worker holds locally (its ZeRO-3 partition, or the whole replicated
model under stages 0-2), so fusing needs no communication; both engines partition identically.
Floating-point buffers are fused the same way; integer buffers come from red.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch

from trainers import distributed
from trainers.engine import Replica

LOSS_ALPHA_BOUNDS = (0.25, 0.75)


def fusion_alpha(rule: str, *, red_ratio: float, red_holdout: float, blue_holdout: float) -> float:
    """Weight of red in the fused model, per the ``strategy.fusion`` rule of red-blue.md."""
    if rule == "uniform":
        return 0.5
    if rule == "ratio":
        return red_ratio
    if rule == "loss":
        total = red_holdout + blue_holdout
        if not total > 0:
            return 0.5
        low, high = LOSS_ALPHA_BOUNDS
        return min(high, max(low, blue_holdout / total))
    raise ValueError(f"unknown fusion rule {rule!r}")


def fuse_tensors(
    alpha: float, red: Sequence[torch.Tensor], blue: Sequence[torch.Tensor]
) -> list[torch.Tensor]:
    """alpha * red + (1 - alpha) * blue, computed in fp32 and cast back to each tensor's dtype."""
    return [
        (alpha * r.float() + (1.0 - alpha) * b.float()).to(r.dtype)
        for r, b in zip(red, blue, strict=True)
    ]


def divergence(red: Replica, blue: Replica, alpha: float, partitioned: bool) -> float:
    """||theta_red - theta_blue|| / ||theta_f|| over the parameters.

    ``partitioned`` (ZeRO-3) sums the squares over every worker's partition.
    """
    reds, blues = red.local_params(), blue.local_params()
    diff = sum(
        float((r.float() - b.float()).pow(2).sum()) for r, b in zip(reds, blues, strict=True)
    )
    fused = sum(float(f.float().pow(2).sum()) for f in fuse_tensors(alpha, reds, blues))
    if partitioned:
        diff, fused = distributed.all_reduce_sum([diff, fused])
    return (diff**0.5) / max(fused**0.5, 1e-12)


def _fusable(replica: Replica) -> list[torch.Tensor]:
    buffers = [b.data for b in replica.module.buffers() if b.is_floating_point()]
    return replica.local_params() + buffers


def fuse_into_both(red: Replica, blue: Replica, alpha: float) -> None:
    """Write theta_f into both replicas; each keeps its own optimizer state (as in local SGD)."""
    fused = fuse_tensors(alpha, _fusable(red), _fusable(blue))
    for replica in (red, blue):
        for target, value in zip(_fusable(replica), fused, strict=True):
            target.copy_(value)
        replica.after_weights_changed()
    for red_buffer, blue_buffer in zip(red.module.buffers(), blue.module.buffers(), strict=True):
        if not red_buffer.is_floating_point():
            blue_buffer.copy_(red_buffer)


@contextmanager
def fused_view(red: Replica, blue: Replica, alpha: float) -> Iterator[Replica]:
    """Temporarily load theta_f into ``red`` (to evaluate it), then restore red's own weights."""
    own = [t.clone() for t in _fusable(red)]
    fused = fuse_tensors(alpha, own, _fusable(blue))
    try:
        for target, value in zip(_fusable(red), fused, strict=True):
            target.copy_(value)
        yield red
    finally:
        for target, value in zip(_fusable(red), own, strict=True):
            target.copy_(value)
