"""The fp32 master weights a DeepSpeed engine's optimizer steps on, and copying them down.

Fusion and the best-model snapshot work on these tensors, not on the model's weights: in mixed
precision the model holds half-precision copies of the masters, and under ZeRO-3 the model's
small parameters stay gathered in ``p.data`` between steps, so writing the parameters alone
either loses the masters' precision or is never seen by the next forward pass.

This is the one module that reads DeepSpeed's optimizer internals; it is tied to the pinned
DeepSpeed version (0.19), whose wrappers keep their masters as follows:

==============================  ============================  ===========  =====================
wrapper (chosen by DeepSpeed)   masters                       partitioned  copied down by
==============================  ============================  ===========  =====================
ZeRO-3                          fp32_partitioned_groups_flat  yes          re-partition, gather
ZeRO-1/2                        single_partition_of_fp32_...  yes          update_lp_params
BF16_Optimizer (bf16, ZeRO-1)   fp32_groups_flat_partition    yes          update_lp_params
FP16_Optimizer (fp16/bf16, 0)   fp32_groups_flat              no           unflatten and copy
FP16_UnfusedOptimizer           fp32_groups                   no           copy
a torch optimizer (fp32, 0)     the parameters themselves     no           (nothing to do)
==============================  ============================  ===========  =====================

Every worker holds the same layout in the red and the blue engine (same model, same config), so
the i-th master tensor of one engine matches the i-th of the other element for element.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch._utils import _unflatten_dense_tensors


@dataclass
class Masters:
    """The fp32 tensors this worker's optimizer updates, and whether they are a partition."""

    tensors: list[torch.Tensor]
    partitioned: bool


def masters_of(optimizer: Any, parameters: list[torch.nn.Parameter]) -> Masters:
    """The master weights of ``optimizer`` (a DeepSpeed wrapper or a torch optimizer), as plain
    tensors sharing their storage (``.data``: written in place, outside autograd)."""
    if hasattr(optimizer, "fp32_partitioned_groups_flat"):  # ZeRO-3
        return _masters(optimizer.fp32_partitioned_groups_flat, partitioned=True)
    if hasattr(optimizer, "single_partition_of_fp32_groups"):  # ZeRO-1/2
        return _masters(optimizer.single_partition_of_fp32_groups, partitioned=True)
    if hasattr(optimizer, "fp32_groups_flat_partition"):  # BF16_Optimizer
        return _masters(optimizer.fp32_groups_flat_partition, partitioned=True)
    if hasattr(optimizer, "fp32_groups_flat"):  # FP16_Optimizer
        return _masters(optimizer.fp32_groups_flat, partitioned=False)
    if hasattr(optimizer, "fp32_groups"):  # FP16_UnfusedOptimizer
        return _masters([p for group in optimizer.fp32_groups for p in group], partitioned=False)
    return _masters(parameters, partitioned=False)


def _masters(tensors: Sequence[torch.Tensor], *, partitioned: bool) -> Masters:
    return Masters([t.data for t in tensors], partitioned=partitioned)


@torch.no_grad()
def copy_masters_down(optimizer: Any) -> None:
    """Make the model's weights the (cast) master weights again, as an optimizer step ends.

    A collective call where the masters are partitioned: every worker calls it.
    """
    if hasattr(optimizer, "fp32_partitioned_groups_flat"):  # ZeRO-3, as its step() does:
        # release every gathered parameter (those under stage3_param_persistence_threshold stay
        # gathered in p.data between steps), write the partitions, gather the persistent again.
        optimizer._partition_all_parameters()
        for sub_group in range(len(optimizer.fp16_partitioned_groups_flat)):
            optimizer._reassign_or_swap_out_partitioned_parameters(sub_group)
        persistent = optimizer.persistent_parameters
        if persistent:
            persistent[0].all_gather(persistent)
    elif hasattr(optimizer, "single_partition_of_fp32_groups") or hasattr(
        optimizer, "fp32_groups_flat_partition"
    ):
        optimizer.update_lp_params()
    elif hasattr(optimizer, "fp32_groups_flat"):
        for masters, group in zip(optimizer.fp32_groups_flat, optimizer.fp16_groups, strict=True):
            for param, value in zip(group, _unflatten_dense_tensors(masters, group), strict=True):
                param.data.copy_(value)
    elif hasattr(optimizer, "fp32_groups"):
        for masters, group in zip(optimizer.fp32_groups, optimizer.fp16_groups, strict=True):
            for param, master in zip(group, masters, strict=True):
                param.data.copy_(master.data)
