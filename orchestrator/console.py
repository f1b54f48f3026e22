"""What the user sees: one line per round while training, and a summary at the end."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from trainers.data import Dataset, Split
from trainers.preprocessing import summary_lines
from trainers.series import block_spans, uneven_spacing

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

ROUND_FIELDS = (
    ("red/train_loss", "red {:.4f}"),
    ("blue/train_loss", "blue {:.4f}"),
    ("train_loss", "train {:.4f}"),
    ("val_loss", "val {:.4f}"),
    ("fusion/divergence", "div {:.3f}"),
    ("lr", "lr {:.2e}"),
    ("samples_per_s", "{:,.0f} samples/s"),
)


def round_line(metrics: dict[str, float], num_rounds: int) -> str:
    """``round 3/11  red 0.5210  blue 0.4990  val 0.3100  lr 1.00e-03  6,100 samples/s``."""
    parts = [f"round {int(metrics['round'])}/{num_rounds}"]
    parts += [fmt.format(metrics[key]) for key, fmt in ROUND_FIELDS if key in metrics]
    return "  ".join(parts)


def print_round(metrics: dict[str, float], num_rounds: int) -> None:
    out.print(round_line(metrics, num_rounds))
    sys.stdout.flush()


def print_error(message: str) -> None:
    err.print(f"[bold red]error:[/] {message}", soft_wrap=True)


def print_warning(message: str) -> None:
    err.print(f"[bold yellow]warning:[/] {escape(message)}", soft_wrap=True)


def print_summary(rows: list[tuple[str, str]], title: str) -> None:
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for key, value in rows:
        table.add_row(key, value)
    out.print(table)


def print_data(dataset: Dataset, split: Split) -> None:
    """How the data is read and split, before training."""
    if dataset.series is not None:
        print_series(dataset, split)
    else:
        print_features(dataset, len(split.train))


def print_series(dataset: Dataset, split: Split) -> None:
    """A series' windows by part, and the time each part's blocks cover."""
    schema, raw = dataset.series, dataset.raw
    assert schema is not None and raw is not None
    covariates = [c for c in schema.feature_names if c not in schema.targets]
    told = f"; covariates {', '.join(covariates)}" if covariates else ""
    err.print(
        f"series: {len(raw)} steps; forecast {', '.join(schema.targets)} {schema.horizon} steps "
        f"ahead from {schema.window}{told}",
        soft_wrap=True,
    )
    uneven = uneven_spacing(raw[schema.time_column])
    if uneven:
        print_warning(
            f"{schema.time_column}: {uneven}; a window is a count of steps "
            f"({schema.window} of history, {schema.horizon} ahead), not a span of time"
        )
    times = raw[schema.time_column].astype(str).tolist()
    span = schema.window + schema.horizon
    for part in ("red", "blue", "val", "test"):
        starts = getattr(split, part)
        blocks = ", ".join(f"{times[a]} to {times[b]}" for a, b in block_spans(starts, span))
        err.print(f"  {part:<5} {len(starts):>5} windows in {escape(blocks)}", soft_wrap=True)


def print_features(dataset: Dataset, train_rows: int) -> None:
    """How the feature columns are read, before training (``trainers.preprocessing``)."""
    if dataset.preprocessing is None:
        return
    columns = len(dataset.preprocessing.columns)
    err.print(f"features: {columns} columns, fitted on the training pool ({train_rows} rows)")
    for how, names in summary_lines(dataset.preprocessing):
        err.print(f"  {how:<28} {escape(names)}", soft_wrap=True)
    if dataset.dropped_labels:
        err.print(f"  left out {dataset.dropped_labels} row(s) without a label")
    if dataset.dropped_rows:
        err.print(
            f"  left out {dataset.dropped_rows} row(s) with a gap in a 'missing: drop' column"
        )


def trials_table(rows: Sequence[Sequence[str]], metric: str, title: str = "trials") -> Table:
    """One row per trial: id, status, params, rounds, best ``metric`` so far."""
    table = Table(title=title, title_justify="left")
    for name in ("trial", "status", "params", "rounds", f"best {metric}"):
        table.add_column(name, overflow="fold")
    for row in rows:
        table.add_row(*row)
    return table
