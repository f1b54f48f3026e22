"""What the user sees: one line per round while training, and a summary at the end."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn, TextIO

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from trainers.tasks.base import DataReport

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)
_result_out: Console | None = None  # with --json: stdout, kept for the one JSON object
_before_json: tuple[Console, Any] | None = None  # what use_json replaced, for end_json
_whole_process = False  # set by the `redblue` entry point: --json redirects file descriptor 1


def own_process() -> None:
    """The command is the whole process (the `redblue` entry point, not a test runner's call):
    with ``--json``, file descriptor 1 itself goes to stderr until the process ends, so what
    Ray's threads, atexit hooks and child processes print after the result stays off stdout."""
    global _whole_process
    _whole_process = True


def use_json() -> None:
    """``--json``: stdout holds one JSON object (:func:`print_result`) and nothing else; what
    would go there (rounds, tables, libraries' prints, Ray's copies of its workers' output)
    goes to stderr."""
    global out, _result_out, _before_json
    if _before_json is None:
        _before_json = (out, sys.stdout)
        result_file: TextIO
        if _whole_process:
            sys.stdout.flush()
            result_file = os.fdopen(os.dup(1), "w")
            os.dup2(2, 1)
        else:
            result_file = sys.stdout
        _result_out = Console(file=result_file, highlight=False, soft_wrap=True)
        out = err
        sys.stdout = sys.stderr


def end_json() -> None:
    """Undo :func:`use_json` once the command is over, so a caller in the same process (a test
    runner) gets its stdout back."""
    global out, _result_out, _before_json
    if _before_json is not None and not _whole_process:
        out, stdout = _before_json
        if sys.stdout is sys.stderr:
            sys.stdout = stdout
        _result_out = _before_json = None


def print_result(result: Any, code: int) -> None:
    """The command's outcome as one JSON object on stdout: ``exit_code`` and the fields of its
    summary (a dataclass or a dict; None when it ended early). NaN and infinities become null."""
    is_summary = dataclasses.is_dataclass(result) and not isinstance(result, type)
    fields = dataclasses.asdict(result) if is_summary else result or {}
    text = json.dumps(_finite({"exit_code": code, **fields}), default=str)
    target = _result_out or out
    target.print(text, markup=False, highlight=False, soft_wrap=True)
    target.file.flush()


def finish(code: int, result: Any, as_json: bool) -> NoReturn:
    """Exit with ``code``; with ``--json``, after the result as one JSON object on stdout."""
    import typer

    if as_json:
        print_result(result, code)
    end_json()
    raise typer.Exit(code)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


ROUND_FIELDS = (  # a GAN's train_loss is its generator's, d_loss its discriminator's
    ("red/train_loss", "red {:.4f}"),
    ("red/d_loss", "(D {:.4f})"),
    ("blue/train_loss", "blue {:.4f}"),
    ("blue/d_loss", "(D {:.4f})"),
    ("train_loss", "train {:.4f}"),
    ("d_loss", "(D {:.4f})"),
    ("val_loss", "val {:.4f}"),
    ("val_accuracy", "acc {:.3f}"),
    ("val/label_accuracy", "label acc {:.3f}"),
    ("val/classes_covered", "classes {:.0f}"),
    ("val/slice_loss", "val slice {:.4f}"),
    ("fusion/divergence", "div {:.3f}"),
    ("lr", "lr {:.2e}"),
    ("samples_per_s", "{:,.0f} samples/s"),
)


def round_line(
    metrics: dict[str, float], num_rounds: int, clock: tuple[float, float | None] | None = None
) -> str:
    """``round 3/11  red 0.5210  blue 0.4990  val 0.3100  lr 1.00e-03  6,100 samples/s``, and
    with ``clock`` (seconds since the command started, seconds left or None)
    ``  0:21 elapsed, 0:40 left``."""
    parts = [f"round {int(metrics['round'])}/{num_rounds}"]
    parts += [fmt.format(metrics[key]) for key, fmt in ROUND_FIELDS if key in metrics]
    if clock is not None:
        parts.append(clock_text(*clock))
    return "  ".join(parts)


def clock_text(elapsed: float, left: float | None) -> str:
    """``0:21 elapsed, 0:40 left`` (without the estimate while there is none)."""
    return f"{_minutes(elapsed)} elapsed" + (f", {_minutes(left)} left" if left else "")


def _minutes(seconds: float) -> str:
    whole = int(round(seconds))
    hours, rest = divmod(whole, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class RoundClock:
    """Elapsed time and an estimate of the time left, from the pace of the rounds after the
    first (the first carries the start-up)."""

    def __init__(self, num_rounds: int, started_at: float) -> None:
        self.num_rounds = num_rounds
        self.started = started_at  # Unix time: the command's start
        self.first: tuple[int, float] | None = None
        self.last = 0

    def tick(self, round_number: int, now: float | None = None) -> tuple[float, float | None]:
        now = time.time() if now is None else now
        restarted, self.last = round_number <= self.last, round_number
        if self.first is None or restarted:  # the first round, or the first after a restart
            self.first = (round_number, now)
            return now - self.started, None
        done, since = round_number - self.first[0], now - self.first[1]
        return now - self.started, since / done * max(0, self.num_rounds - round_number)


def print_round(
    metrics: dict[str, float], num_rounds: int, clock: RoundClock | None = None
) -> None:
    times = clock.tick(int(metrics["round"])) if clock else None
    out.print(round_line(metrics, num_rounds, times))
    sys.stdout.flush()


def print_error(message: str) -> None:
    err.print(f"[bold red]error:[/] {message}", soft_wrap=True)


def refused(code: int, message: str) -> tuple[int, dict[str, str]]:
    """Print ``message`` as the error; ``code`` and the result ``--json`` prints for it."""
    print_error(message)
    return code, {"error": message}


def print_warning(message: str) -> None:
    err.print(f"[bold yellow]warning:[/] {escape(message)}", soft_wrap=True)


def print_summary(rows: list[tuple[str, str]], title: str) -> None:
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for key, value in rows:
        table.add_row(key, value)
    out.print(table)


def print_table(header: Sequence[str], rows: Sequence[Sequence[str]], title: str) -> None:
    """A table with a header row (numbers right-aligned past the first column)."""
    table = Table(title=title, title_justify="left")
    for i, name in enumerate(header):
        table.add_column(name, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*(escape(str(value)) for value in row))
    out.print(table)


def print_label_issues(path: Path, shown: int = 5) -> None:
    """How many label issues the run found (``strategy.clean``) and the most confident ones."""
    import pandas as pd

    issues = pd.read_csv(path)
    out.print(f"label issues: {len(issues)} row(s) flagged, logged as {path.name}")
    if len(issues) == 0:
        return
    table = Table(title=f"the {min(shown, len(issues))} most confident", title_justify="left")
    for column in issues.columns:
        table.add_column(column.replace("_", " "), justify="right")
    for row in issues.head(shown).itertuples(index=False):
        table.add_row(*(escape(str(value)) for value in row))
    out.print(table)


def print_data(report: DataReport) -> None:
    """How the data is read and split, before training (its task's ``describe``)."""
    for line in report.lines:
        err.print(escape(line), soft_wrap=True)
    for warning in report.warnings:
        print_warning(warning)


def print_workers(scaling, reason: str | None) -> None:  # a ScalingSection
    """What ``scaling.num_workers: auto`` chose, and why."""
    if reason:
        err.print(f"workers: {scaling.num_workers}, {reason} (scaling.num_workers auto)")


def trials_table(rows: Sequence[Sequence[str]], metric: str, title: str = "trials") -> Table:
    """One row per trial: id, status, params, rounds, best ``metric`` so far."""
    table = Table(title=title, title_justify="left")
    for name in ("trial", "status", "params", "rounds", f"best {metric}"):
        table.add_column(name, overflow="fold")
    for row in rows:
        table.add_row(*row)
    return table
