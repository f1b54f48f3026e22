"""The torch side of forecasting (``data.kind: series``): the objective and prediction of a
recurrent forecaster, whose outputs are its target columns standardized by their input scaling
(``trainers.families.recurrent_net.Forecast``)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from trainers.data.forecast_scores import error_sums, scores_of
from trainers.data.series import SeriesInput
from trainers.families.summed_metrics import Sums
from trainers.families.tabular_net import Supervised
from trainers.spec import ModelSpec


def target_scaling(model: nn.Module, spec: ModelSpec) -> tuple[torch.Tensor, torch.Tensor]:
    """The target columns' mean and standard deviation on the training blocks (the model's
    input buffers)."""
    index = SeriesInput.of_model(spec).target_index
    mean, std = model.get_buffer("input_mean"), model.get_buffer("input_std")
    return mean[index].detach().float().cpu(), std[index].detach().float().cpu()


class Forecasting(Supervised):
    """Mean squared error on the standardized targets over every step and target; test metrics
    ``test_mae``, ``test_rmse``, ``test_smape``, ``test_mase`` and ``test_mse`` in the targets'
    own units."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor, naive_scale: np.ndarray) -> None:
        super().__init__("forecast")
        self.mean, self.std, self.naive_scale = mean, std, naive_scale

    @classmethod
    def for_forecaster(cls, spec: ModelSpec, model: nn.Module) -> Forecasting:
        mean, std = target_scaling(model, spec)
        return cls(mean, std, np.asarray(spec.preprocessing["naive_scale"]))

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        mean, std = self.mean.to(outputs.device), self.std.to(outputs.device)
        return nn.functional.mse_loss(outputs.float(), (targets.float() - mean) / std)

    def summary(self, outputs: torch.Tensor, targets: torch.Tensor) -> Sums:
        """The batch's additive sums (``trainers.families.summed_metrics``)."""
        values = (outputs.float().cpu() * self.std + self.mean).numpy()
        elements = float(targets.numel())
        return {
            "loss_sum": np.float64(self.loss(outputs, targets)) * elements if elements else 0.0,
            "loss_count": np.float64(elements),
            **error_sums(values, targets.float().cpu().numpy()),
        }

    def metrics_of(self, sums: Sums) -> dict[str, float]:
        """``test_loss``; ``test_mae``, ``test_rmse``, ``test_smape``, ``test_mase``
        (``trainers.data.forecast_scores``) and ``test_mse``, in the targets' own units."""
        scores = scores_of(sums, self.naive_scale)
        return {
            "test_loss": float(sums["loss_sum"] / sums["loss_count"]),
            **{f"test_{name}": value for name, value in scores.items()},
            "test_mse": float(sums["squared_error"] / sums["loss_count"]),
        }


@torch.no_grad()
def predict(model: nn.Module, spec: ModelSpec, windows: np.ndarray) -> tuple[np.ndarray, None]:
    """Forecasts ``[histories, horizon, targets]`` in the targets' own units."""
    model.eval()
    device = next(model.parameters()).device
    outputs = model(torch.tensor(windows, dtype=torch.float32, device=device)).float().cpu()
    mean, std = target_scaling(model, spec)
    return (outputs * std + mean).numpy(), None
