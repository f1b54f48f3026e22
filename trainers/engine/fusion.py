"""Fusion of the red and blue replicas: theta_f = alpha * theta_red + (1 - alpha) * theta_blue.

A replica (red or blue) is one engine per network of its family; each network is fused with its
counterpart. Fusion works on each optimizer's fp32 master weights (``Engine.masters``: a
worker's partition under ZeRO-1/2/3, the whole network otherwise), so it needs no communication
of its own and keeps the masters' precision; the engine then copies the fused masters down into
the network's (half-precision, gathered) weights, so the next forward pass and optimizer step use
theta_f. Both engines hold identical layouts. Floating-point buffers are fused the same way;
integer buffers come from red.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from trainers.engine import distributed
from trainers.engine.base import Engine, Replica

LOSS_ALPHA_BOUNDS = (0.25, 0.75)


def fusion_alpha(rule: str, *, red_ratio: float, red_holdout: float, blue_holdout: float) -> float:
    """Weight of red in the fused model, per the ``strategy.fusion`` rule of docs/red-blue.md.

    Every worker must pass the same (all-reduced) losses, so that all compute the same alpha.
    """
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


def divergence(red: Replica, blue: Replica, alpha: float) -> float:
    """||theta_red - theta_blue|| / ||theta_f|| over the master weights of every network (summed
    over every worker's partition where they are partitioned; the same value on every worker)."""
    diff = fused = 0.0
    partitioned = False
    for network in red:
        red_masters, blue_masters = red[network].masters(), blue[network].masters()
        reds, blues = red_masters.tensors, blue_masters.tensors
        diff += sum(float((r - b).double().pow(2).sum()) for r, b in zip(reds, blues, strict=True))
        fused += sum(float(f.double().pow(2).sum()) for f in fuse_tensors(alpha, reds, blues))
        partitioned = partitioned or red_masters.partitioned
    if partitioned:
        diff, fused = distributed.all_reduce_sum([diff, fused])
    return (diff**0.5) / max(fused**0.5, 1e-12)


def engines(replicas: dict[str, Replica]) -> dict[str, Engine]:
    """Every engine of some replicas, by a tag: the replica's name (``red``) for a family with one
    network, ``red-<network>`` for more (checkpoint tags and snapshot keys)."""
    return {
        name if len(replica) == 1 else f"{name}-{network}": engine
        for name, replica in replicas.items()
        for network, engine in replica.items()
    }


def _fusable(engine: Engine) -> list[torch.Tensor]:
    buffers = [b.data for b in engine.module.buffers() if b.is_floating_point()]
    return engine.masters().tensors + buffers


@dataclass
class Snapshot:
    """Copies of the fusable tensors (masters and float buffers) of some replicas' engines."""

    tensors: dict[str, list[torch.Tensor]]

    @classmethod
    def take(cls, replicas: dict[str, Replica]) -> Snapshot:
        tagged = engines(replicas)
        return cls({tag: [t.clone() for t in _fusable(r)] for tag, r in tagged.items()})

    def restore(self, replicas: dict[str, Replica]) -> None:
        """Write the copies back (a collective call where masters are partitioned)."""
        for tag, engine in engines(replicas).items():
            _write(engine, self.tensors[tag])


def _write(engine: Engine, values: Sequence[torch.Tensor]) -> None:
    for target, value in zip(_fusable(engine), values, strict=True):
        target.copy_(value)
    engine.masters_changed()


def fuse_into_both(red: Replica, blue: Replica, alpha: float) -> None:
    """Write theta_f into both replicas, network by network; each engine keeps its own optimizer
    state (as in local SGD)."""
    for network in red:
        fused = fuse_tensors(alpha, _fusable(red[network]), _fusable(blue[network]))
        for engine in (red[network], blue[network]):
            _write(engine, fused)
        pairs = zip(red[network].module.buffers(), blue[network].module.buffers(), strict=True)
        for red_buffer, blue_buffer in pairs:
            if not red_buffer.is_floating_point():
                blue_buffer.copy_(red_buffer)


@contextmanager
def fused_view(red: Replica, blue: Replica, alpha: float) -> Iterator[Replica]:
    """Temporarily load theta_f into ``red`` (to evaluate it), then restore red's own weights."""
    own = Snapshot.take({"red": red})
    for (tag, engine), network in zip(engines({"red": red}).items(), red, strict=True):
        _write(engine, fuse_tensors(alpha, own.tensors[tag], _fusable(blue[network])))
    try:
        yield red
    finally:
        own.restore({"red": red})
