"""How forecasts are scored (``data.kind: series``): MAE, RMSE, sMAPE and MASE (scaled by the
one-step naive error within the training blocks), the naive and seasonal naive forecasts scored
beside a model's, and the error at each step ahead. Arrays are ``[windows, horizon, targets]``;
no torch here."""

from __future__ import annotations

import numpy as np


def forecast_metrics(predicted: np.ndarray, truth: np.ndarray, scale: np.ndarray) -> dict:
    """MAE, RMSE and sMAPE (in %) over every window, step and target, and MASE (each target's
    MAE over its naive scale, averaged over targets); ``[windows, horizon, targets]`` arrays."""
    return scores_of(error_sums(predicted, truth), scale)


def error_sums(predicted: np.ndarray, truth: np.ndarray) -> dict[str, np.ndarray]:
    """The errors' additive sums (over batches of windows, and workers): what
    :func:`scores_of` reads."""
    predicted, truth = predicted.astype(np.float64), truth.astype(np.float64)
    error = predicted - truth
    denominator = np.abs(predicted) + np.abs(truth)
    ratio = np.divide(
        2 * np.abs(error), denominator, out=np.zeros_like(error), where=denominator > 0
    )
    return {
        "target_steps": np.float64(error.shape[0] * error.shape[1]),
        "absolute_error": np.abs(error).sum(axis=(0, 1)),
        "squared_error": np.float64((error**2).sum()),
        "smape_sum": np.float64(ratio.sum()),
    }


def scores_of(sums: dict[str, np.ndarray], scale: np.ndarray) -> dict[str, float]:
    count = float(sums["target_steps"]) * len(sums["absolute_error"])
    per_target = sums["absolute_error"] / sums["target_steps"]
    return {
        "mae": float(sums["absolute_error"].sum()) / count,
        "rmse": float(np.sqrt(float(sums["squared_error"]) / count)),
        "smape": 100 * float(sums["smape_sum"]) / count,
        "mase": float((per_target / scale).mean()),
    }


def baseline_forecasts(
    windows: np.ndarray, horizon: int, target_index: list[int], season: int | None
) -> dict[str, np.ndarray]:
    """The naive forecast (the last value, repeated) and, with a ``season``, the seasonal naive
    one (the value one season back, repeated by season) of ``windows`` ``[n, window, columns
    (+ mask)]``, each ``[n, horizon, targets]``."""
    history = windows[..., target_index]  # [n, window, targets]
    forecasts = {"naive": np.repeat(history[:, -1:], horizon, axis=1)}
    if season:
        length = history.shape[1]
        forecasts["seasonal_naive"] = history[
            :, [length - season + h % season for h in range(horizon)]
        ]
    return forecasts


def baselines(
    windows: np.ndarray, truth: np.ndarray, target_index: list[int], scale: np.ndarray, season
) -> dict[str, float]:
    """The baselines' forecasts of ``windows`` scored against ``truth`` as
    ``baseline/naive_*`` and ``baseline/seasonal_naive_*``."""
    forecasts = baseline_forecasts(windows, truth.shape[1], target_index, season)
    return {
        f"baseline/{name}_{metric}": value
        for name, forecast in forecasts.items()
        for metric, value in forecast_metrics(forecast, truth, scale).items()
    }


def errors_by_step(forecasts: dict[str, np.ndarray], truth: np.ndarray) -> dict:
    """Each forecast's mean absolute error at each step ahead (over windows and targets)."""
    return {
        "step": list(range(1, truth.shape[1] + 1)),
        "mae": {
            name: np.abs(forecast - truth).mean(axis=(0, 2)).tolist()
            for name, forecast in forecasts.items()
        },
    }
