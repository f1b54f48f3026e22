"""A sweep's trials: their outcome, their ranking, the results table and plot, the summary."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator import console
from orchestrator.config import RedblueConfig
from orchestrator.sweeps.figures import (
    CURVES_FILE,
    PARALLEL_FILE,
    SCATTER_FILE,
    log_figures,
    value_text,
)


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
        values = ", ".join(f"`{k}` = {value_text(best.params.get(k))}" for k in keys)
        lines += [
            f"**Best:** trial {best.trial_id}, {metric} {value_text(best.metrics.get(metric))}; "
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
        values = " | ".join(value_text(trial.params.get(k)) for k in keys)
        rounds = trial.metrics.get("round")
        lines.append(
            f"| {place} | {trial.trial_id} | {status} | {values} | "
            f"{value_text(trial.metrics.get(metric))} | {value_text(rounds)} |"
        )
    lines += [
        "",
        f"Beside this report: `{CURVES_FILE}` ({metric} per round of each trial; a trial the "
        f"scheduler stopped is dashed and ends where it stopped), `{PARALLEL_FILE}` and "
        f"`{SCATTER_FILE}`.",
    ]
    return "\n".join(lines) + "\n"


def log_results(cfg: RedblueConfig, parent, ranked: list[TrialOutcome]) -> None:
    """The results table (CSV), the sweep report (Markdown) and its figures
    (:mod:`orchestrator.sweeps.figures`)."""
    import pandas as pd

    rows = [
        {"trial_id": t.trial_id, "status": t.status, "run_id": t.run_id, **t.params, **t.metrics}
        for t in ranked
    ]
    frame = pd.DataFrame(rows)
    parent.client.log_text(parent.run_id, frame.to_csv(index=False), "results.csv")
    parent.client.log_text(parent.run_id, sweep_report(cfg, ranked), "sweep_report.md")
    histories = {
        t.trial_id: parent.client.get_metric_history(t.run_id, cfg.sweep.metric) for t in ranked
    }
    log_figures(cfg, parent, frame, histories)


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
