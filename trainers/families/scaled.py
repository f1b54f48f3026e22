"""Standardization carried by a model: buffers fitted on the training pool P', so they travel with
the weights and a served model takes raw values. Shared by the tabular and recurrent networks."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

if TYPE_CHECKING:
    from trainers.data.streamed_table import Standardization


class Scaled(nn.Module):
    """A module with an input standardization of ``width`` features and, for regression, a
    standardized target. The buffers stay fp32 under DeepSpeed's mixed precision (which casts
    parameters only)."""

    input_mean: torch.Tensor
    input_std: torch.Tensor
    target_mean: torch.Tensor
    target_std: torch.Tensor

    def add_scaling(self, width: int) -> None:
        self.register_buffer("input_mean", torch.zeros(width))
        self.register_buffer("input_std", torch.ones(width))
        self.register_buffer("target_mean", torch.zeros(1))
        self.register_buffer("target_std", torch.ones(1))

    def scale(self, values: torch.Tensor) -> torch.Tensor:
        """``values`` (``[..., width]``) standardized, in fp32."""
        return (values.float() - self.input_mean.float()) / self.input_std.float()

    def set_normalization(self, rows: np.ndarray, targets: np.ndarray | None) -> None:
        """Fit the buffers on training ``rows`` (``[n, width]``) and regression ``targets``."""
        std = rows.std(axis=0)
        self.input_mean.copy_(torch.as_tensor(rows.mean(axis=0)))
        self.input_std.copy_(torch.as_tensor(np.where(std > 1e-8, std, 1.0)))
        if targets is not None:
            self.target_mean.fill_(float(targets.mean()))
            self.target_std.fill_(float(max(targets.std(), 1e-8)))

    def set_standardization(self, fitted: Standardization) -> None:
        """Set the buffers to statistics computed elsewhere (a streamed table's, over P')."""
        self.input_mean.copy_(torch.tensor(fitted.input_mean))
        self.input_std.copy_(torch.tensor(fitted.input_std))
        if fitted.target_mean is not None:
            self.target_mean.fill_(float(fitted.target_mean))
            self.target_std.fill_(float(fitted.target_std or 1.0))
