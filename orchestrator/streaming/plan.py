"""A streamed run's plan, from one Ray Data pass over the source (on the cluster, where the files
are): each task folds the statistics of its share of the files, batch by batch
(``trainers.data.table_stats``), and the driver folds the tasks', as they come, into the parts'
sizes, the classes, the preprocessing and standardization fitted over P' only, and a sample of
each part; the plan then holds that sample in memory and the stream for the rest. The statistics
are kept (``stats_cache``): a later run over the same files skips the pass."""

from __future__ import annotations

import hashlib
import json
import pickle  # only this pass's own statistics, between its own tasks
import time
from collections.abc import Iterable

from orchestrator import console
from orchestrator.streaming.choice import PendingStream
from orchestrator.streaming.stats_cache import StatsCache
from orchestrator.warm_start import warm_start
from trainers.config import RunSettings
from trainers.data.row_stream import StreamPlan
from trainers.data.sources import Parts
from trainers.data.streamed_table import StreamedTable, finish
from trainers.data.table_stats import Layout, TableStats
from trainers.errors import DataError
from trainers.loop.plan import RunPlan, balanced_from_counts, loop_config, plan_run, rounds_of
from trainers.tasks.base import DataReport
from trainers.tasks.table import table_spec

TASKS_PER_CPU = 4  # the pass's tasks per CPU of the cluster (each folds a share of the files)
PROGRESS_EVERY_S = 10.0  # a long pass says how far it is, at most this often


def table_stats(
    parts: Parts,
    layout: Layout,
    sample_rows: int,
    tasks: int | None = None,
    progress_every_s: float = PROGRESS_EVERY_S,
) -> TableStats:
    """Every file's statistics, folded by Ray Data tasks where the files are, then on the
    driver as they arrive; DataError from a task (a bad value in row 90,000) comes back as
    itself. Each task folds a share of the files in turn (``tasks`` of them; by default
    TASKS_PER_CPU for each CPU of the cluster, at most one per file): a task costs about 0.2 s
    of scheduling, and a 1M-row file about 0.4 s of a core. A pass that takes longer than
    ``progress_every_s`` prints how many files it has folded, that often."""
    import ray
    import ray.data

    from orchestrator.streaming.rows import configure_ray_data

    def fold_files(batch: dict) -> dict:
        """Each group's statistics, carried as their pickle (Arrow stores bytes as they are;
        an object it would convert, warning)."""
        folded = [fold(parts, layout, paths, sample_rows) for paths in batch["paths"]]
        return {"stats": [pickle.dumps(stats) for stats in folded]}

    configure_ray_data()
    if tasks is None:
        tasks = TASKS_PER_CPU * int(ray.cluster_resources().get("CPU", 1))
    tasks = max(1, min(len(parts.paths), tasks))
    groups = [{"paths": list(parts.paths[start::tasks])} for start in range(tasks)]
    files = ray.data.from_items(groups, override_num_blocks=len(groups))
    total = TableStats()
    progress = _Progress(len(parts.paths), progress_every_s)
    try:
        # In the groups' order (configure_ray_data preserves it).
        folded = files.map_batches(fold_files, batch_size=1).iter_rows()
        for group, row in zip(groups, folded, strict=True):
            total = total.merged(pickle.loads(row["stats"]), sample_rows)
            progress.folded(len(group["paths"]), sum(total.rows))
    except Exception as exc:
        cause = _data_error(exc)
        if cause is None:
            raise
        raise cause from None
    return total


class _Progress:
    """The pass's progress line: files and rows folded, and about how long is left."""

    def __init__(self, files: int, every_s: float) -> None:
        self.files, self.every_s, self.done = files, every_s, 0
        self.started = self.said = time.perf_counter()

    def folded(self, files: int, rows: int) -> None:
        self.done += files
        now = time.perf_counter()
        if now - self.said < self.every_s:
            return
        self.said, elapsed = now, now - self.started
        left = elapsed * (self.files - self.done) / self.done
        console.err.print(
            f"  {self.done} of {self.files} files folded, {rows:,} rows ({elapsed:.0f} s; about "
            f"{left:.0f} s left)"
        )


def fold(parts: Parts, layout: Layout, paths: Iterable[str], sample_rows: int) -> TableStats:
    """The statistics of the files at ``paths``, folded batch by batch in this process."""
    from orchestrator.streaming.rows import keyed_batches

    stats = TableStats()
    for path in paths:
        for keyed in keyed_batches(parts, layout, str(path)):
            stats = stats.folded(keyed, layout, sample_rows)
    return stats


def _data_error(exc: BaseException) -> DataError | None:
    """The DataError a Ray task raised, however Ray wrapped it."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, DataError):
            return DataError(str(seen))
        cause = getattr(seen, "cause", None)
        seen = cause if isinstance(cause, BaseException) else seen.__cause__
    return None


def plan_streamed(cfg: RunSettings, parts: Parts, layout: Layout) -> RunPlan:
    """The run's plan over the streamed table (Ray must be up: the pass runs on it)."""
    return plan_from_stats(cfg, parts, layout, kept_stats(cfg, parts, layout))


def kept_stats(cfg: RunSettings, parts: Parts, layout: Layout) -> TableStats:
    """The table's statistics, kept from an earlier pass (``stats_cache``), else from a pass
    now (then kept), saying which."""
    sample_rows = cfg.strategy.eval_rows
    cache = StatsCache.of(parts, layout, sample_rows) if cfg.data.cache_stats else None
    stats = cache.load() if cache is not None else None
    if cache is not None and stats is not None:
        console.err.print(
            f"statistics of {parts.source} kept from an earlier pass over the same files "
            f"({cache.folder}; data.cache_stats: false makes a new pass)"
        )
        return stats
    console.err.print(
        f"reading {len(parts.paths)} file(s) of {parts.source} with Ray Data: parts' sizes, "
        "classes and preprocessing over the training pool"
    )
    stats = table_stats(parts, layout, sample_rows)
    if cache is not None:
        cache.save(stats)
    return stats


def plan_from_stats(cfg: RunSettings, parts: Parts, layout: Layout, stats: TableStats) -> RunPlan:
    """The plan from the table's folded statistics: its sample in memory, the rest streamed."""
    from orchestrator.streaming.rows import StreamedRows

    table = finish(stats, layout)
    _check_sizes(table, cfg.scaling.num_workers)
    dataset, split = table.sample, table.sample_split
    fitted = table.preprocessing
    spec = table_spec(cfg, dataset, split.train)
    rows = StreamedRows(parts, layout, fitted.to_dict(), table.task, table.classes, cfg.seed)
    stream = StreamPlan(rows, table.sizes, table.standardization, fingerprint(parts, cfg))
    weights = None
    if cfg.optim.class_weights == "balanced" and table.pool_class_counts is not None:
        weights = balanced_from_counts(table.pool_class_counts)
    train_rows = table.sizes["red"] + table.sizes["blue"]
    return RunPlan(
        dataset,
        split,
        spec,
        loop_config(cfg),
        rounds_of(cfg, train_rows),
        class_weights=weights,
        stream=stream,
    )


def _check_sizes(table: StreamedTable, workers: int) -> None:
    for name, size in table.sizes.items():
        if size < workers:
            raise DataError(
                f"data set too small for the split: the {name} part has {size} row(s) but there "
                f"are {workers} workers"
            )


def fingerprint(parts: Parts, cfg: RunSettings) -> str:
    """The source's files and the split's settings: a resume on other data is refused."""
    described = {
        "paths": list(parts.paths),
        "split": [cfg.data.test_fraction, cfg.strategy.val_fraction, cfg.strategy.red_ratio],
        "seed": cfg.seed,
        "key": cfg.data.row_key,
    }
    return hashlib.sha256(json.dumps(described).encode()).hexdigest()[:16]


def plan_announced(cfg: RunSettings, pending: PendingStream) -> RunPlan:
    """Plan a streamed run with one Ray Data pass over its source, saying so as it goes."""
    started = time.perf_counter()
    plan = plan_streamed(cfg, pending.parts, pending.layout)
    assert plan.stream is not None
    sizes = ", ".join(f"{name} {rows:,}" for name, rows in plan.stream.sizes.items())
    console.err.print(f"  rows: {sizes} ({time.perf_counter() - started:.1f} s)")
    console.print_data(describe(plan))
    return warm_start(cfg, plan)


def describe(plan: RunPlan) -> DataReport:
    """The data's report; a streamed table's says how many rows its fit read."""
    report = plan.task.describe(plan.dataset, plan.split)
    if plan.stream is None:
        return report
    pool = plan.stream.sizes["red"] + plan.stream.sizes["blue"]
    lines = [f"streamed with Ray Data; preprocessing fitted on the training pool ({pool:,} rows)"]
    params = {**report.params, "data.streamed": "true"}
    params.update({f"data.rows.{name}": str(rows) for name, rows in plan.stream.sizes.items()})
    return DataReport(lines + report.lines[1:], report.warnings, params, report.artifacts)


def train_rows(plan: RunPlan) -> int:
    """Rows of the training pool P' (a streamed plan's split is its sample's)."""
    if plan.stream is not None:
        return plan.stream.sizes["red"] + plan.stream.sizes["blue"]
    return len(plan.split.red) + len(plan.split.blue)


def plan_trial(cfg: RunSettings) -> RunPlan:
    """A Tune trial's plan, made in the trial: in memory, or its own pass over a streamed table
    (a trial may sweep the seed and the split's shares)."""
    from orchestrator.streaming.choice import streams

    if not streams(cfg):
        return plan_run(cfg)
    pending = PendingStream.open(cfg)
    return plan_streamed(cfg, pending.parts, pending.layout)


def plan_or_refuse(cfg: RunSettings, pending: PendingStream, run) -> RunPlan | None:
    """:func:`plan_announced`; on bad data (found by the pass) the MLflow ``run`` is failed with
    the message, which is printed, and None returned (the command exits 2)."""
    try:
        return plan_announced(cfg, pending)
    except DataError as exc:
        run.fail(str(exc))
        console.print_error(str(exc))
        return None
