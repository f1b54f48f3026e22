"""What a comparison leaves: the parent run's metrics, ``comparison.csv`` and
``comparison.png`` in MLflow, and the same table with one verdict line per strategy on the
console."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from rich.markup import escape
from rich.table import Table

from orchestrator import console
from orchestrator.compare.stats import (
    JITTER,
    Child,
    delta_key,
    finished,
    label,
    metric_names,
    paired,
    parent_metrics,
    ratio_key,
    strategies_of,
    verdict,
)

CSV_FILE = "comparison.csv"
PLOT_FILE = "comparison.png"


def csv_text(children: list[Child]) -> str:
    """One row per child: strategy, seed, run, status, wall time and every final metric."""
    import pandas as pd

    rows = [
        {
            "strategy": c.strategy,
            "seed": c.seed,
            "run_id": c.run_id,
            "status": c.status,
            "train_seconds": c.metrics.get("train_seconds", math.nan),
            **{k: v for k, v in sorted(c.metrics.items()) if k != "train_seconds"},
        }
        for c in sorted(children, key=lambda c: (c.seed, c.strategy))
    ]
    return pd.DataFrame(rows).to_csv(index=False)


def figure(children: list[Child], metric: str, strategies: Sequence[str] | None = None) -> Any:
    """A panel per metric (those any child has): one x position per strategy, standard first;
    per seed, a grey line through its strategies' values; each strategy's mean as a red bar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    order = strategies_of(children, strategies)
    names = [n for n in metric_names(metric) if any(n in c.metrics for c in children)] or [metric]
    width = max(5, 1.2 * len(order) + 2)
    fig, axes = plt.subplots(1, len(names), figsize=(width * len(names), 4), squeeze=False)
    for axis, name in zip(axes[0], names, strict=True):
        by_strategy = [finished(children, s, name) for s in order]
        for seed in sorted(set().union(*by_strategy)):
            points = [(x, values[seed]) for x, values in enumerate(by_strategy) if seed in values]
            xs, ys = zip(*points, strict=True)
            axis.plot(xs, ys, marker="o", color="0.6", linewidth=1)
            axis.annotate(f"seed {seed}", points[-1], xytext=(5, 0), textcoords="offset points")
        for x, values in enumerate(by_strategy):
            if values:
                mean = float(sum(values.values()) / len(values))
                axis.hlines(mean, x - 0.15, x + 0.15, color="C3", linewidth=3)
        axis.set_xticks(range(len(order)), [label(s) for s in order])
        axis.set_xlim(-0.4, len(order) - 0.4)
        axis.set_title(f"{name}: per seed (grey), mean (red)")
    fig.tight_layout()
    return fig


def log_to_parent(
    parent, children: list[Child], metric: str, strategies: Sequence[str] | None = None
) -> dict[str, float]:
    """Metrics, ``comparison.csv`` and ``comparison.png`` on the parent run; returns the
    metrics."""
    import matplotlib.pyplot as plt

    metrics = parent_metrics(children, metric, strategies)
    parent.log_metrics({k: v for k, v in metrics.items() if math.isfinite(v)})
    parent.client.log_text(parent.run_id, csv_text(children), CSV_FILE)
    fig = figure(children, metric, strategies)
    parent.client.log_figure(parent.run_id, fig, PLOT_FILE)
    plt.close(fig)
    return metrics


def _cell(mean: float, std: float) -> str:
    if math.isnan(mean):
        return "-"
    return f"{mean:.4f}" if math.isnan(std) else f"{mean:.4f} ± {std:.4f}"


def _number(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.4f}"


NO_P_VALUE = "no p-value (a t-test needs two or more paired seeds whose differences vary)"


def _p(value: float) -> str:
    return "nan" if math.isnan(value) else f"{value:.3g}"


def _print_table(
    children: list[Child], name: str, order: list[str], metrics: dict[str, float]
) -> None:
    """``name`` per seed (a row) and strategy (a column), then each strategy's mean and std."""
    table = Table(title=f"{name} per seed", title_justify="left")
    table.add_column("seed", justify="right")
    for strategy in order:
        table.add_column(label(strategy), justify="right", overflow="fold")
    values = [finished(children, strategy, name) for strategy in order]
    seeds = sorted(set().union(*values))
    for i, seed in enumerate(seeds):
        cells = [f"{by_seed[seed]:.4f}" if seed in by_seed else "-" for by_seed in values]
        table.add_row(str(seed), *cells, end_section=i == len(seeds) - 1)
    for what in ("mean", "std"):
        table.add_row(what, *(_number(metrics[f"{s}/{name}_{what}"]) for s in order))
    console.out.print(table)


def print_comparison(
    children: list[Child],
    metric: str,
    higher_is_better: bool,
    metrics: dict[str, float],
    strategies: Sequence[str] | None = None,
) -> dict[str, str]:
    """The tables (per seed and the means), each strategy's differences from standard training
    with their p-values (raw and Holm-adjusted), the gaps, the compute ratios and one verdict
    per strategy; returns the verdicts by strategy."""
    order = strategies_of(children, strategies)
    others = order[1:]
    for name in metric_names(metric)[:2]:  # the score metric and test_loss; the jitter on a line
        _print_table(children, name, order, metrics)
    jitter = [
        f"{label(s)} {_cell(metrics[f'{s}/{JITTER}_mean'], metrics[f'{s}/{JITTER}_std'])}"
        for s in order
    ]
    console.out.print(f"{JITTER} (mean ± std): " + ", ".join(jitter))
    tests = sum(1 for key, p in metrics.items() if key.endswith("_p_value") and not math.isnan(p))
    for strategy in others:
        for name in metric_names(metric):
            p_value = metrics[delta_key(strategy, name, "p_value")]
            tested = (
                f"paired t-test p = {_p(p_value)}, "
                f"Holm p = {_p(metrics[delta_key(strategy, name, 'p_holm')])}"
                if not math.isnan(p_value)
                else NO_P_VALUE
            )
            console.out.print(
                f"delta {name} ({label(strategy)} - standard): "
                f"{metrics[delta_key(strategy, name, 'mean')]:+.4f}, {tested}"
            )
    if tests:
        console.out.print(
            f"Holm p: each p-value corrected for the {tests} test{'s' * (tests > 1)} "
            "of this comparison"
        )
    gaps = [
        f"{label(s)} {metrics[f'{s}/gap_mean']:+.4f}" for s in order if f"{s}/gap_mean" in metrics
    ]
    if gaps:
        console.out.print("overfitting gap (final train loss - test loss): " + ", ".join(gaps))
    verdicts = {}
    for strategy in others:
        ratio = metrics.get(ratio_key(strategy))
        p_holm = metrics[delta_key(strategy, metric, "p_holm")]
        verdicts[strategy] = verdict(
            paired(children, metric, strategy), higher_is_better, ratio, p_holm
        )
        console.out.print(f"[bold]verdict:[/] {escape(verdicts[strategy])}")
    return verdicts
