"""The few collectives the loop needs; each is the identity when torch.distributed is not set up."""

from __future__ import annotations

import numpy as np
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


def all_reduce_arrays(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Sum each array over all workers, in float64, in one collective (the same on each)."""
    if world()[1] == 1:
        return arrays
    names = sorted(arrays)
    shaped = [np.asarray(arrays[name], dtype=np.float64) for name in names]
    flat = torch.from_numpy(np.concatenate([array.ravel() for array in shaped]))
    if dist.get_backend() == "nccl":
        flat = flat.cuda()
    dist.all_reduce(flat)
    pieces = np.split(flat.cpu().numpy(), np.cumsum([array.size for array in shaped])[:-1])
    return {
        name: piece.reshape(array.shape)
        for name, piece, array in zip(names, pieces, shaped, strict=True)
    }
