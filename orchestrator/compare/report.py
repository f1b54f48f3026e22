"""What a comparison leaves: the parent run's metrics, ``comparison.csv`` and
``comparison.png`` in MLflow, and the same table with a one-line verdict on the console."""

from __future__ import annotations

import math
from typing import Any

from rich.markup import escape
from rich.table import Table

from orchestrator import console
from orchestrator.compare.stats import STRATEGIES, Child, paired, parent_metrics, verdict

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


def figure(children: list[Child], metric: str) -> Any:
    """Per seed, a line from standard to red-blue; each strategy's mean as a bar marker."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys((metric, "test_loss")))
    fig, axes = plt.subplots(1, len(names), figsize=(5 * len(names), 4), squeeze=False)
    for axis, name in zip(axes[0], names, strict=True):
        pair = paired(children, name)
        for seed, standard, red_blue in zip(pair.seeds, pair.standard, pair.red_blue, strict=True):
            axis.plot([0, 1], [standard, red_blue], marker="o", color="0.6", linewidth=1)
            axis.annotate(f"seed {seed}", (1, red_blue), xytext=(5, 0), textcoords="offset points")
        for x, values in ((0, pair.standard), (1, pair.red_blue)):
            if len(values):
                axis.hlines(values.mean(), x - 0.15, x + 0.15, color="C3", linewidth=3)
        axis.set_xticks([0, 1], ["standard", "red-blue"])
        axis.set_xlim(-0.4, 1.6)
        axis.set_title(f"{name}: per seed (grey), mean (red)")
    fig.tight_layout()
    return fig


def log_to_parent(parent, children: list[Child], metric: str) -> dict[str, float]:
    """Metrics, ``comparison.csv`` and ``comparison.png`` on the parent run; returns the
    metrics."""
    import matplotlib.pyplot as plt

    metrics = parent_metrics(children, metric)
    parent.log_metrics({k: v for k, v in metrics.items() if math.isfinite(v)})
    parent.client.log_text(parent.run_id, csv_text(children), CSV_FILE)
    fig = figure(children, metric)
    parent.client.log_figure(parent.run_id, fig, PLOT_FILE)
    plt.close(fig)
    return metrics


def _cell(mean: float, std: float) -> str:
    if math.isnan(mean):
        return "-"
    return f"{mean:.4f}" if math.isnan(std) else f"{mean:.4f} ± {std:.4f}"


def print_comparison(
    children: list[Child], metric: str, higher_is_better: bool, metrics: dict[str, float]
) -> str:
    """The table (per seed and the means) and the verdict; returns the verdict."""
    names = list(dict.fromkeys((metric, "test_loss")))
    table = Table(title="red-blue against standard training", title_justify="left")
    for column in ("seed", *(f"{s} {n}" for n in names for s in STRATEGIES)):
        table.add_column(column.replace("red_blue", "red-blue"), justify="right")
    pairs = {name: paired(children, name) for name in names}
    for i, seed in enumerate(pairs[metric].seeds):
        cells = [str(seed)]
        for name in names:
            pair = pairs[name]
            index = pair.seeds.index(seed) if seed in pair.seeds else None
            for strategy in STRATEGIES:
                cells.append("-" if index is None else f"{getattr(pair, strategy)[index]:.4f}")
        table.add_row(*cells, end_section=i == len(pairs[metric].seeds) - 1)
    means = ["mean ± std"]
    for name in names:
        for strategy in STRATEGIES:
            means.append(
                _cell(metrics[f"{strategy}/{name}_mean"], metrics[f"{strategy}/{name}_std"])
            )
    table.add_row(*means)
    console.out.print(table)
    for name in names:
        p_value = metrics[f"delta/{name}_p_value"]
        console.out.print(
            f"delta {name} (red-blue - standard): {metrics[f'delta/{name}_mean']:+.4f}, "
            f"paired t-test p = {p_value:.3g}"
        )
    gaps = [
        f"{s} {metrics[f'{s}/gap_mean']:+.4f}" for s in STRATEGIES if f"{s}/gap_mean" in metrics
    ]
    if gaps:
        console.out.print("overfitting gap (final train loss - test loss): " + ", ".join(gaps))
    ratio = metrics.get("compute_ratio")
    line = verdict(pairs[metric], higher_is_better, ratio)
    console.out.print(f"[bold]verdict:[/] {escape(line)}")
    return line
