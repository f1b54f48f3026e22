"""The few collectives the loop needs; each is the identity when torch.distributed is not set up."""

from __future__ import annotations

import torch
import torch.distributed as dist


def world() -> tuple[int, int]:
    """(rank, world_size) of this process; (0, 1) outside a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def all_reduce_sum(values: list[float]) -> list[float]:
    """Sum each value over all workers."""
    if world()[1] == 1:
        return list(values)
    device = "cuda" if dist.get_backend() == "nccl" else "cpu"
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return tensor.tolist()


def all_reduce_mean(values: list[float]) -> list[float]:
    """Average each value over all workers."""
    size = world()[1]
    return [v / size for v in all_reduce_sum(values)]


def any_true(flag: bool) -> bool:
    """True on every worker when the flag is set on any of them."""
    return all_reduce_sum([1.0 if flag else 0.0])[0] > 0


def gather_rows(pieces: list[torch.Tensor]) -> torch.Tensor:
    """This worker's ``pieces`` and every other worker's, concatenated along rows in rank order
    (the same tensor on every worker)."""
    import torch.distributed as dist

    mine = torch.cat(pieces) if pieces else None
    if world()[1] == 1:
        assert mine is not None
        return mine
    everyone: list[torch.Tensor | None] = [None] * world()[1]
    dist.all_gather_object(everyone, mine)
    return torch.cat([piece for piece in everyone if piece is not None])
