"""The label-noise study (``python benchmarks/redblue_study.py --regime noisy``): label-issue
detection and cleaning by red-blue's cross-predictions (``strategy.clean``) against standard
training and against the two-stage pipeline users build today (out-of-fold probabilities from
2-fold cross-validation, cleanlab's ``find_label_issues``, a retraining on the kept rows).

Every training runs the real loop (``trainers.loop.trainer.Trainer``) on plain PyTorch engines in
this one process, one thread, no Ray and no periodic checkpoints, so that its times are training
compute: the process's CPU time (what the compute ratio reads, whatever else the machine runs)
and wall time. For each data set, noise and scope, each seed (paired: the same split, noise and
initialisation for every strategy) trains:

- ``standard``: one model on all of P';
- ``red_blue``: ``strategy.clean: off``; ``red_blue prune`` and ``red_blue weight``: the same
  with ``strategy.clean`` prune or weight (their flagged rows at the end are their detection);
- ``two-stage``: standard training on red's rows predicts blue's and the other way round (the
  same halves, the same epochs, V and T), ``cleanlab.filter.find_label_issues`` on those
  out-of-fold probabilities (its default, prune by noise rate), then standard training on the
  rows of P' it keeps; its times count all three trainings, the predictions and cleanlab.

cleanlab is a benchmark dependency: ``pip install -e '.[bench]'``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA_SETS = ("digits", "breast_cancer", "wine", "penguins")
NOISES = (("symmetric", 0.2), ("symmetric", 0.4), ("pairs", 0.2))
SCOPES = ("pool", "pool_and_val")
CLEAN_DATA_SETS = ("digits", "breast_cancer")  # the noise-0 rows: what cleaning costs
BINARY = ("breast_cancer",)  # two classes: pairs noise is symmetric noise, left out
STRATEGY_SETS = {
    "standard": ["strategy.kind=standard"],
    "red_blue": ["strategy.kind=red_blue"],
    "red_blue prune": ["strategy.kind=red_blue", "strategy.clean=prune"],
    "red_blue weight": ["strategy.kind=red_blue", "strategy.clean=weight"],
    "two-stage": ["strategy.kind=standard"],
}
ALL_STRATEGIES = tuple(STRATEGY_SETS)
COMMON = ["scaling.num_workers=1", "checkpoint.every_rounds=1000000"]


@dataclass(frozen=True)
class Cell:
    """One (data set, noise, scope) and the strategies it trains."""

    data: str
    kind: str
    noise: float
    scope: str
    strategies: tuple[str, ...] = ALL_STRATEGIES

    @property
    def noise_name(self) -> str:
        return f"{self.kind} {self.noise:g}" if self.noise > 0 else "none"

    def overrides(self, strategy: str, seed: int) -> list[str]:
        noise = [
            f"data.label_noise={self.noise}",
            f"data.label_noise_kind={self.kind}",
            f"data.label_noise_scope={self.scope}",
        ]
        return [*COMMON, f"seed={seed}", *noise, *STRATEGY_SETS[strategy]]


@dataclass
class Outcome:
    """One training (or pipeline) on one seed."""

    accuracy: float
    cpu_seconds: float  # this process's CPU time: the training compute, whatever else runs
    seconds: float  # wall time
    flagged: np.ndarray | None = None  # dataset rows flagged as label issues
    noisy: np.ndarray | None = None  # dataset rows whose labels the noise changed

    def detection(self) -> tuple[float, float, float] | None:
        """(precision, recall, F1) of the flags against the changed rows."""
        if self.flagged is None or self.noisy is None or not len(self.noisy):
            return None
        hits = int(np.isin(self.flagged, self.noisy).sum())
        precision = hits / len(self.flagged) if len(self.flagged) else 0.0
        recall = hits / len(self.noisy)
        f1 = 2 * precision * recall / (precision + recall) if hits else 0.0
        return precision, recall, f1


@dataclass
class CellResult:
    cell: Cell
    outcomes: dict[str, dict[int, Outcome]] = field(default_factory=dict)


def cells(only: str | None) -> list[Cell]:
    """The grid: every noise on every scope of every data set, then the noise-0 rows."""
    grid = [
        Cell(data, kind, noise, scope)
        for data in DATA_SETS
        for scope in SCOPES
        for kind, noise in NOISES
        if not (kind == "pairs" and data in BINARY)
    ]
    grid += [
        Cell(data, "symmetric", 0.0, "pool", ("standard", "red_blue prune"))
        for data in CLEAN_DATA_SETS
    ]
    return [cell for cell in grid if not only or cell.data == only]


# --- one training -----------------------------------------------------------------------------
class FinalModel:
    """A loop's ``report`` callable that loads the final model from the final checkpoint."""

    def __init__(self) -> None:
        self.model: Any = None
        self.spec: Any = None

    def __call__(self, metrics: dict[str, float], checkpoint: Path | None) -> None:
        from trainers.models import load_model
        from trainers.spec import FINAL_MODEL_DIR

        if checkpoint is not None and (checkpoint / FINAL_MODEL_DIR).is_dir():
            self.model, self.spec = load_model(checkpoint / FINAL_MODEL_DIR)


def train(plan: Any, cfg: Any, report: Callable | None = None) -> tuple[dict, np.ndarray | None]:
    """The real loop on plain PyTorch engines for ``plan``: its final metrics, and the dataset
    rows ``strategy.clean`` flagged at the end (None without cleaning)."""
    from trainers.engine.plain import PlainEngine
    from trainers.loop.trainer import Trainer, build_replicas

    def make(model, name, clock, optim):
        return PlainEngine(model, optim=optim, grad_accum_steps=1, clock=clock)

    def ignore(metrics: dict[str, float], checkpoint: Path | None) -> None:
        pass

    trainer = Trainer(plan, build_replicas(plan, make), report or ignore)
    metrics = trainer.run().metrics
    cleaning = trainer.cleaning
    if cleaning is None or cfg.strategy.clean == "off":
        return metrics, None
    return metrics, cleaning.cross.rows[cleaning.cross.flagged]


def on_rows(plan: Any, cfg: Any, rows: np.ndarray) -> Any:
    """``plan`` for standard training on the dataset ``rows`` only (same epochs, V and T)."""
    from trainers.dataset import Split
    from trainers.loop.plan import rounds_of

    split = Split(plan.split.test, plan.split.val, red=rows, blue=np.array([], dtype=np.int64))
    return dataclasses.replace(plan, split=split, rounds=rounds_of(cfg, len(rows)))


def two_stage(plan: Any, cfg: Any) -> tuple[dict[str, float], np.ndarray]:
    """Out-of-fold probabilities from 2-fold cross-validation on red's and blue's rows,
    cleanlab's label issues, standard training on the rest of P': (its final metrics, the
    flagged dataset rows)."""
    from cleanlab.filter import find_label_issues

    from trainers.models import predict

    pool, labels = plan.split.train, plan.dataset.labels
    probabilities = np.zeros((len(pool), plan.dataset.num_outputs), dtype=np.float64)
    for fold, other in ((plan.split.red, plan.split.blue), (plan.split.blue, plan.split.red)):
        final = FinalModel()
        train(on_rows(plan, cfg, fold), cfg, final)
        _, scores = predict(final.model, final.spec, plan.dataset.features[other])
        probabilities[np.searchsorted(pool, other)] = scores
    issues = find_label_issues(labels[pool], probabilities)
    metrics, _ = train(on_rows(plan, cfg, pool[~issues]), cfg)
    return metrics, pool[issues]


def run_one(cell: Cell, strategy: str, seed: int) -> Outcome:
    """One strategy on one seed; its times count training only (not loading the data)."""
    from orchestrator.config import load_config
    from trainers.loop.plan import plan_run

    cfg = load_config(REPO / "configs" / f"{cell.data}.yaml", cell.overrides(strategy, seed))
    plan = plan_run(cfg)
    started, started_cpu = time.perf_counter(), time.process_time()
    if strategy == "two-stage":
        metrics, flagged = two_stage(plan, cfg)
    else:
        metrics, flagged = train(plan, cfg)
    cpu_seconds, seconds = time.process_time() - started_cpu, time.perf_counter() - started
    # Rounded: an accuracy is a count over T, and equal differences must test as equal.
    accuracy = round(metrics["test_accuracy"], 9)
    return Outcome(accuracy, cpu_seconds, seconds, flagged, plan.noisy_rows)


# --- the study --------------------------------------------------------------------------------
def run(seeds: int, only: str | None) -> tuple[list[CellResult], float]:
    """Every cell of the grid on seeds 0..seeds-1; progress on stderr. (results, minutes)."""
    import torch

    torch.set_num_threads(1)
    grid = cells(only)
    started = time.time()
    for strategy in ALL_STRATEGIES:  # first-call costs (imports, allocations) out of the timings
        run_one(Cell(grid[0].data, "symmetric", 0.2, "pool"), strategy, 0)
    results = []
    for number, cell in enumerate(grid, 1):
        cell_started = time.time()
        result = CellResult(cell, {strategy: {} for strategy in cell.strategies})
        for seed in range(seeds):
            shift = seed % len(cell.strategies)  # each strategy runs first on some seed
            for strategy in cell.strategies[shift:] + cell.strategies[:shift]:
                result.outcomes[strategy][seed] = run_one(cell, strategy, seed)
        results.append(result)
        print(
            f"[{number}/{len(grid)}] {cell.data} / {cell.noise_name} / {cell.scope}: "
            f"{time.time() - cell_started:.0f} s (elapsed {(time.time() - started) / 60:.1f} min)",
            file=sys.stderr,
            flush=True,
        )
    return results, (time.time() - started) / 60


@dataclass
class Line:
    """A table line: one strategy of one cell, over the seeds."""

    cell: Cell
    strategy: str
    accuracy: np.ndarray
    delta: float = math.nan
    p_value: float = math.nan
    p_holm: float = math.nan
    detection: np.ndarray | None = None  # [seeds, 3]: precision, recall, F1
    compute_ratio: float = math.nan  # median CPU time over standard's
    wall_ratio: float = math.nan  # median wall time over standard's


def paired_p_value(values: np.ndarray, standard: np.ndarray) -> float:
    """Two-sided paired t-test (scipy's ``ttest_rel``); NaN with fewer than 2 seeds or the
    same difference on every seed (no spread to test against)."""
    from scipy import stats

    deltas = values - standard
    if len(deltas) < 2 or not np.ptp(deltas) > 0:
        return math.nan
    return float(stats.ttest_rel(values, standard).pvalue)


def lines_of(results: list[CellResult]) -> list[Line]:
    """Every strategy of every cell, with its paired t-test against standard (Holm-corrected
    over all of them: a test without spread counts as p = 1)."""
    from statsmodels.stats.multitest import multipletests

    lines = []
    for result in results:
        base = result.outcomes["standard"]
        seeds = sorted(base)
        base_accuracy = np.array([base[s].accuracy for s in seeds])
        base_cpu = np.median([base[s].cpu_seconds for s in seeds])
        base_wall = np.median([base[s].seconds for s in seeds])
        for strategy, outcomes in result.outcomes.items():
            line = Line(result.cell, strategy, np.array([outcomes[s].accuracy for s in seeds]))
            line.compute_ratio = np.median([outcomes[s].cpu_seconds for s in seeds]) / base_cpu
            line.wall_ratio = np.median([outcomes[s].seconds for s in seeds]) / base_wall
            found = [outcomes[s].detection() for s in seeds]
            if all(d is not None for d in found):
                line.detection = np.array(found)
            if strategy != "standard":
                line.delta = float((line.accuracy - base_accuracy).mean())
                line.p_value = paired_p_value(line.accuracy, base_accuracy)
            lines.append(line)
    tested = [line for line in lines if line.strategy != "standard"]
    p_values = [1.0 if math.isnan(line.p_value) else line.p_value for line in tested]
    for line, corrected in zip(tested, multipletests(p_values, method="holm")[1], strict=True):
        line.p_holm = float(corrected)
    return lines


def _mean_std(values: np.ndarray, scale: float = 1.0, digits: int = 2) -> str:
    std = values.std(ddof=1) if len(values) > 1 else math.nan
    return f"{values.mean() * scale:.{digits}f} ± {std * scale:.{digits}f}"


def table(lines: list[Line]) -> str:
    header = (
        "| data set | noise | scope | strategy | test accuracy (%) | Δ vs standard (points) | "
        "p | p (Holm) | precision | recall | F1 | compute ratio | wall ratio |\n"
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n"
    )
    rows = []
    for line in lines:
        cell, blank = line.cell, "—"
        tested = line.strategy != "standard"
        detection = [blank] * 3
        if line.detection is not None:
            means = line.detection.mean(axis=0)
            detection = [
                f"{means[0]:.3f}",
                f"{means[1]:.3f}",
                _mean_std(line.detection[:, 2], 1, 3),
            ]
        tests = [blank] * 3
        if tested:
            p_value = "n/a" if math.isnan(line.p_value) else f"{line.p_value:.2g}"
            tests = [f"{line.delta * 100:+.2f}", p_value, f"{line.p_holm:.2g}"]
        rows.append(
            f"| {cell.data} | {cell.noise_name} | {cell.scope if cell.noise else blank} | "
            f"{line.strategy} | {_mean_std(line.accuracy, 100)} | {' | '.join(tests)} | "
            f"{' | '.join(detection)} | {line.compute_ratio:.2f} | {line.wall_ratio:.2f} |"
        )
    return header + "\n".join(rows) + "\n"


def raw(results: list[CellResult]) -> list[dict]:
    """Every seed's numbers, for a look beyond the table."""
    out = []
    for result in results:
        cell = dataclasses.asdict(result.cell)
        for strategy, outcomes in result.outcomes.items():
            for seed, outcome in outcomes.items():
                found = outcome.detection()
                out.append(
                    {
                        **cell,
                        "strategy": strategy,
                        "seed": seed,
                        "test_accuracy": outcome.accuracy,
                        "cpu_seconds": outcome.cpu_seconds,
                        "seconds": outcome.seconds,
                        "flagged": None if outcome.flagged is None else len(outcome.flagged),
                        "noisy": None if outcome.noisy is None else len(outcome.noisy),
                        "precision_recall_f1": found,
                    }
                )
    return out


def study(seeds: int, only: str | None, output: Path) -> str:
    """Run the grid, write the table to ``output`` (and every seed's numbers beside it, as
    JSON); returns the table with its notes."""
    results, minutes = run(seeds, only)
    output.with_suffix(".json").write_text(json.dumps(raw(results), indent=1))
    lines = lines_of(results)
    tests = sum(line.strategy != "standard" for line in lines)
    text = table(lines)
    text += (
        f"\n{seeds} seeds per row (seed 0..{seeds - 1}), paired: the same split, noise and "
        f"initialisation for every strategy. Δ is the strategy's test accuracy minus standard's; "
        f"p is a two-sided paired t-test (n/a: the same difference on every seed, counted as "
        f"p = 1), Holm-corrected over the table's {tests} tests. "
        "precision / recall / F1: the flagged rows at the end (two-stage: cleanlab's) against "
        "the rows whose labels the noise changed. compute ratio: the median over the seeds of the "
        "training's CPU time (this one process, one thread) over standard's median; wall ratio: "
        f"the same of wall times (the machine's other work shows in it). Wall time "
        f"{minutes:.0f} min.\n"
    )
    output.write_text(text)
    return text
