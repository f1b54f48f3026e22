"""A sweep's figures, logged to its parent run beside ``sweep_report.md``: the metric against
each swept key (``metric_vs_params.png``), the trials' parallel coordinates
(``parallel_coordinates.png``) and each trial's metric per round (``trial_curves.png``, where the
scheduler's stops show)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

    from orchestrator.config import RedblueConfig

SCATTER_FILE = "metric_vs_params.png"
PARALLEL_FILE = "parallel_coordinates.png"
CURVES_FILE = "trial_curves.png"


def log_figures(
    cfg: RedblueConfig, parent, frame: pd.DataFrame, histories: dict[str, list]
) -> None:
    """Log the three figures (none without the metric or a space); ``frame``: one row per
    trial (``results.csv``); ``histories``: each trial's MLflow history of the metric."""
    if cfg.sweep.metric not in frame or not cfg.sweep.space:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figures = {
        SCATTER_FILE: metric_vs_params(cfg, frame),
        PARALLEL_FILE: parallel_coordinates(cfg, frame),
        CURVES_FILE: trial_curves(cfg, frame, histories),
    }
    for name, figure in figures.items():
        parent.client.log_figure(parent.run_id, figure, name)
        plt.close(figure)


def metric_vs_params(cfg: RedblueConfig, frame: pd.DataFrame) -> Figure:
    """The metric of each trial against each swept key, by how the trial ended."""
    import matplotlib.pyplot as plt
    from matplotlib import ticker

    metric = cfg.sweep.metric
    keys = list(cfg.sweep.space)
    figure, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3.5), squeeze=False)
    for axis, key in zip(axes[0], keys, strict=True):
        for status, marker in (("FINISHED", "o"), ("KILLED", "x"), ("FAILED", "s")):
            part = frame[frame["status"] == status]
            if key in part and len(part):
                axis.scatter(
                    part[key].astype(str) if part[key].dtype == object else part[key],
                    part[metric],
                    marker=marker,
                    label=status.lower(),
                )
        if cfg.sweep.space[key].kind == "loguniform":
            axis.set_xscale("log")
            axis.xaxis.set_minor_formatter(ticker.NullFormatter())  # labels on decades only
        axis.tick_params(axis="x", labelrotation=30)
        axis.set(xlabel=key, ylabel=metric)
    axes[0][0].legend(fontsize=8)
    figure.suptitle(f"{cfg.name}: {metric} per trial")
    figure.tight_layout()
    return figure


def trial_curves(cfg: RedblueConfig, frame: pd.DataFrame, histories: dict[str, list]) -> Figure:
    """Each trial's metric per round, the ones the scheduler stopped dashed, ending where it
    stopped them."""
    import matplotlib.pyplot as plt

    metric = cfg.sweep.metric
    figure, axis = plt.subplots(figsize=(7, 4))
    statuses: dict[Any, str] = dict(zip(frame["trial_id"], frame["status"], strict=True))
    for index, (trial_id, history) in enumerate(sorted(histories.items())):
        points = sorted((m.step, m.value) for m in history)
        if not points:
            continue
        status = statuses.get(trial_id, "FINISHED")
        axis.plot(
            *zip(*points, strict=True),
            color=plt.cm.tab10(index % 10),
            linestyle="-" if status == "FINISHED" else "--",
            marker="x" if status != "FINISHED" else None,
            markevery=[len(points) - 1],
            label=f"{trial_id} ({'stopped' if status == 'KILLED' else status.lower()})",
        )
    axis.set(xlabel="round", ylabel=metric, title=f"{cfg.name}: {metric} per round, each trial")
    if metric.endswith("loss"):
        axis.set_yscale("log")
    axis.legend(fontsize=7, ncol=2)
    figure.tight_layout()
    return figure


def parallel_coordinates(cfg: RedblueConfig, frame: pd.DataFrame) -> Figure:
    """One line per trial through an axis per swept key and one for the metric, coloured by
    the metric (brighter is better); each axis spans its values (decades for a log-uniform
    key, evenly spaced choices for a categorical one), its ends labelled; stopped trials
    dashed."""
    import matplotlib.pyplot as plt
    import numpy as np
    import pandas as pd

    metric, keys = cfg.sweep.metric, list(cfg.sweep.space)
    frame = frame[frame[metric].notna()] if metric in frame else frame.iloc[:0]
    axes_keys = [*keys, metric]
    figure, axis = plt.subplots(figsize=(max(5.0, 1.8 * len(axes_keys)), 4))
    positions: dict[str, np.ndarray] = {}
    for key in axes_keys:
        values = frame[key] if key in frame else pd.Series([np.nan] * len(frame))
        log = key in cfg.sweep.space and cfg.sweep.space[key].kind == "loguniform"
        numeric = pd.to_numeric(values, errors="coerce")
        if numeric.notna().all() and len(values):
            shown = np.log10(numeric) if log else numeric
            low, high = float(shown.min()), float(shown.max())
            ends = (values[numeric.idxmin()], values[numeric.idxmax()])
        else:  # choices: evenly spaced, in their order of appearance
            order = list(dict.fromkeys(values.astype(str)))
            shown = values.astype(str).map(order.index).astype(float)
            low, high, ends = 0.0, float(max(len(order) - 1, 1)), (order[0], order[-1])
        span = high - low or 1.0
        positions[key] = ((shown - low) / span).to_numpy(dtype=float)
        x = len(positions) - 1
        axis.axvline(x, color="grey", linewidth=0.8)
        if len(values):
            axis.annotate(value_text(ends[0]), (x, -0.04), ha="center", va="top", fontsize=7)
            axis.annotate(value_text(ends[1]), (x, 1.04), ha="center", va="bottom", fontsize=7)
    scores = positions[metric] if cfg.sweep.mode == "max" else 1.0 - positions[metric]
    for row, status in enumerate(frame["status"]):
        axis.plot(
            range(len(axes_keys)),
            [positions[key][row] for key in axes_keys],
            color=plt.cm.viridis(scores[row]),
            linestyle="-" if status == "FINISHED" else "--",
            linewidth=1.2,
        )
    axis.set_xticks(range(len(axes_keys)), axes_keys, fontsize=8)
    axis.set(ylim=(-0.15, 1.15), yticks=[], title=f"{cfg.name}: trials by {metric}")
    figure.tight_layout()
    return figure


def value_text(value: Any) -> str:
    """A value as the report and the figures show it: ``-`` when missing, 4 digits."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.0f}" if value.is_integer() and abs(value) >= 1 else f"{value:.4g}"
    return str(value)
