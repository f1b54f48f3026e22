"""A sweep's trials: their outcome, their ranking, the results table and plot, the summary."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator import console
from orchestrator.config import RedblueConfig

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

PARALLEL_FILE = "parallel_coordinates.png"


@dataclass
class TrialOutcome:
    trial_id: str
    run_id: str
    status: str  # FINISHED, KILLED (stopped early), FAILED, RUNNING
    params: dict[str, Any]
    metrics: dict[str, float]
    checkpoint_path: str | None


@dataclass
class SweepSummary:
    parent_run_id: str
    sweep_id: str
    trials: list[TrialOutcome]
    best: TrialOutcome | None
    model_uri: str | None
    version: str | None
    alias: str | None
    reason: str
    best_config_path: Path | None


def rank(trials: list[TrialOutcome], metric: str, mode: str) -> list[TrialOutcome]:
    """Finished trials first, best ``metric`` first; then the others by their last value."""

    def key(trial: TrialOutcome) -> tuple[int, float]:
        value = trial.metrics.get(metric, math.nan)
        signed = value if mode == "min" else -value
        return (
            0 if trial.status == "FINISHED" else 1,
            signed if math.isfinite(value) else math.inf,
        )

    return sorted(trials, key=key)


def sweep_report(cfg: RedblueConfig, ranked: list[TrialOutcome]) -> str:
    """``sweep_report.md``: the sweep's settings, its best trial, and every trial ranked with its
    values, its metric, and where the scheduler stopped it."""
    sweep, metric = cfg.sweep, cfg.sweep.metric
    counts: dict[str, int] = {}
    for trial in ranked:
        counts[trial.status] = counts.get(trial.status, 0) + 1
    keys = list(sweep.space)
    lines = [
        f"# Sweep of {cfg.name}",
        "",
        f"Ranked by {metric} ({sweep.mode}); scheduler {sweep.scheduler}, search {sweep.search}; "
        + ", ".join(f"{n} {status.lower()}" for status, n in counts.items())
        + " (killed: stopped early by the scheduler).",
        "",
    ]
    best = ranked[0] if ranked and ranked[0].status == "FINISHED" else None
    if best is not None:
        values = ", ".join(f"`{k}` = {_value(best.params.get(k))}" for k in keys)
        lines += [
            f"**Best:** trial {best.trial_id}, {metric} {_value(best.metrics.get(metric))}; "
            f"{values}; MLflow run `{best.run_id}`.",
            "",
        ]
    header = ["rank", "trial", "status", *(f"`{k}`" for k in keys), metric, "rounds"]
    lines += [
        "| " + " | ".join(header) + " |",
        "| ---: | --- | --- | " + " | ".join("---:" for _ in keys) + " | ---: | ---: |",
    ]
    for place, trial in enumerate(ranked, 1):
        status = "stopped early" if trial.status == "KILLED" else trial.status.lower()
        values = " | ".join(_value(trial.params.get(k)) for k in keys)
        rounds = trial.metrics.get("round")
        lines.append(
            f"| {place} | {trial.trial_id} | {status} | {values} | "
            f"{_value(trial.metrics.get(metric))} | {_value(rounds)} |"
        )
    return "\n".join(lines) + "\n"


def _value(value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.0f}" if value.is_integer() and abs(value) >= 1 else f"{value:.4g}"
    return str(value)


def log_results(cfg: RedblueConfig, parent, ranked: list[TrialOutcome]) -> None:
    """The results table (CSV), the sweep report (Markdown), a plot of the metric against
    each swept parameter and the trials' parallel coordinates."""
    import pandas as pd

    rows = [
        {"trial_id": t.trial_id, "status": t.status, "run_id": t.run_id, **t.params, **t.metrics}
        for t in ranked
    ]
    frame = pd.DataFrame(rows)
    parent.client.log_text(parent.run_id, frame.to_csv(index=False), "results.csv")
    parent.client.log_text(parent.run_id, sweep_report(cfg, ranked), "sweep_report.md")
    metric = cfg.sweep.metric
    if metric not in frame or not cfg.sweep.space:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import ticker

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
    parent.client.log_figure(parent.run_id, figure, "metric_vs_params.png")
    plt.close(figure)
    figure = parallel_coordinates(cfg, frame)
    parent.client.log_figure(parent.run_id, figure, PARALLEL_FILE)
    plt.close(figure)


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
            axis.annotate(_value(ends[0]), (x, -0.04), ha="center", va="top", fontsize=7)
            axis.annotate(_value(ends[1]), (x, 1.04), ha="center", va="bottom", fontsize=7)
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


def print_summary(cfg: RedblueConfig, summary: SweepSummary) -> None:
    from orchestrator.sweeps.tracking import format_params
    from orchestrator.tracking import tracking_uri, ui_command

    metric = cfg.sweep.metric
    rows = [
        (
            t.trial_id,
            t.status.lower().replace("killed", "stopped early"),
            format_params(t.params),
            str(int(t.metrics.get("round", 0))) if "test_loss" not in t.metrics else "all",
            f"{t.metrics.get(metric, math.nan):.4f}",
        )
        for t in summary.trials
    ]
    console.out.print(console.trials_table(rows, metric, title=f"{cfg.name}: trials, best first"))
    if summary.best is None:
        console.print_error(f"no trial finished; see MLflow run {summary.parent_run_id}")
        return
    rows2 = [
        (k, f"{v:.4f}")
        for k, v in sorted(summary.best.metrics.items())
        if k.startswith("test_") or k == metric
    ]
    rows2 += [
        ("best trial", f"{summary.best.trial_id} ({format_params(summary.best.params)})"),
        ("best config", str(summary.best_config_path)),
        ("model URI", str(summary.model_uri)),
        (
            "registered",
            f"{cfg.name} version {summary.version} "
            + (f"as @{summary.alias}" if summary.alias else "without an alias"),
        ),
        ("why", summary.reason),
        ("sweep MLflow run", summary.parent_run_id),
        ("MLflow UI", ui_command(tracking_uri())),
    ]
    console.print_summary(rows2, title=f"{cfg.name}: sweep {summary.sweep_id} finished")
