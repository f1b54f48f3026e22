"""How training scales with the table: a generated table of N rows x 32 float32 features and a
4-class label (a folder of Parquet parts of 1M rows, as a data lake holds it), trained by
``redblue train`` for one epoch (red-blue, ``model.hidden: [64]``, batch 512, 2 workers), at
several sizes in one run, streamed with Ray Data (``data.streaming: on``) and read into memory
(``off``; only up to ``--max-in-memory`` rows: beyond, the in-memory path does not fit).

For each size it measures the wall time of the command, the training time of the rounds
(``train_seconds``), the rounds, training samples/s, the time to the first optimizer step, and
the peak memory summed over every process of the run (the driver and everything it starts: the
local Ray, its workers), both resident (RSS, which counts a page that several processes share,
such as Ray's object store, once in each) and proportional (PSS: a shared page split among the
processes that map it, so the sum is what the run holds), with each process's share at the PSS
peak in the JSON. A streamed run is then started again and stopped at its first step: its
statistics are kept from the first run's pass (``data.cache_stats``), so that time is the
start-up alone. For a streamed run it also notes how long the statistics pass took (the
command's "rows: ... (N s)" line) and how long pyarrow alone takes to read the same files on
every core of the machine (a floor for any pass over the rows). The ratios that matter are
between sizes of the same run: wall and training time per row should stay flat (cost linear in
the rows). ``--eval-rows`` sets ``strategy.eval_rows`` (default: the config's); a value at least
the size of the table scores every part in full at every evaluation.

Both paths split by a hash of each row's position (``data.split: hash``), so they train on
the same rows.

Run: ``python benchmarks/data_scale.py [--rows 1000000,4000000,10000000,40000000]
[--streaming on,off] [--max-in-memory 10000000] [--eval-rows N] [--first-step-only] [--json F]``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
FEATURES, CLASSES = 32, 4
FIRST_STEP = re.compile(r"first optimizer step ([\d.]+) s after")  # lines the command prints
STATS_PASS = re.compile(r"^  rows: .*\(([\d.]+) s\)$", re.MULTILINE)


def write_table(folder: Path, rows: int, seed: int = 0) -> int:
    """A learnable table: the label is the argmax of a fixed linear map of the features, with
    10% of the labels drawn at random. Written as Parquet parts of at most 1M rows; returns the
    folder's size in bytes."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    weights = rng.normal(size=(FEATURES, CLASSES)).astype(np.float32)
    names = [f"x{i}" for i in range(FEATURES)]
    folder.mkdir(parents=True)
    for part, start in enumerate(range(0, rows, 1_000_000)):
        count = min(1_000_000, rows - start)
        features = rng.normal(size=(count, FEATURES)).astype(np.float32)
        labels = (features @ weights).argmax(axis=1)
        noisy = rng.random(count) < 0.1
        labels[noisy] = rng.integers(0, CLASSES, size=int(noisy.sum()))
        table = pa.table({**{n: features[:, i] for i, n in enumerate(names)}, "y": labels})
        pq.write_table(table, folder / f"part-{part:05d}.parquet", row_group_size=131_072)
    return sum(path.stat().st_size for path in folder.iterdir())


class PeakMemory:
    """Samples the memory of a process and all its descendants and keeps the peak of two sums:
    resident memory (RSS, which counts a page shared by several processes, such as Ray's object
    store, once in each) and proportional memory (PSS, which splits a shared page among the
    processes that map it, so the sum is what the run really holds). At the PSS peak it also
    keeps each process's share, by process title (``ray::...`` for Ray's workers), and how many
    processes had each title."""

    def __init__(self, pid: int, every_s: float = 0.5) -> None:
        self.pid, self.every_s = pid, every_s
        self.peak, self.peak_pss, self.peak_at_s, self.shmem_at_peak = 0, 0, 0.0, 0
        self.at_peak: dict[str, list[int]] = {}  # title: [PSS, processes]
        self.started = time.perf_counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        import psutil

        while not self._stop.is_set():
            try:
                root = psutil.Process(self.pid)
                processes = [root, *root.children(recursive=True)]
            except psutil.Error:
                processes = []
            rss, pss, shmem, shares = 0, 0, 0, {}
            for process in processes:
                try:
                    memory = smaps_rollup(process.pid)
                    title = " ".join(process.cmdline()[:1])[:40] or process.name()
                except (psutil.Error, OSError):
                    continue
                rss, pss = rss + memory["Rss"], pss + memory["Pss"]
                shmem += memory["Pss_Shmem"]
                share = shares.setdefault(title, [0, 0])
                share[0], share[1] = share[0] + memory["Pss"], share[1] + 1
            self.peak = max(self.peak, rss)
            if pss > self.peak_pss:
                self.peak_pss, self.at_peak, self.shmem_at_peak = pss, shares, shmem
                self.peak_at_s = time.perf_counter() - self.started
            self._stop.wait(self.every_s)

    def stop(self) -> dict:
        self._stop.set()
        self._thread.join()
        return {
            "peak_memory_gb": self.peak / 1e9,
            "peak_pss_gb": self.peak_pss / 1e9,
            "pss_peak_at_s": round(self.peak_at_s, 1),
            "shared_memory_pss_at_peak_gb": round(self.shmem_at_peak / 1e9, 2),
            "pss_at_peak_gb": {
                title: round(share / 1e9, 2)
                for title, (share, _) in sorted(self.at_peak.items(), key=lambda item: -item[1][0])
            },
            "processes_at_peak": {title: count for title, (_, count) in self.at_peak.items()},
        }


def smaps_rollup(pid: int) -> dict[str, int]:
    """A process's memory in bytes, from Linux's ``/proc/PID/smaps_rollup``: ``Rss``, ``Pss``
    and ``Pss_Shmem`` (its share of shared memory, such as Ray's object store)."""
    figures = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        name, value, *_ = line.split()
        figures[name.rstrip(":")] = int(value) * 1024
    return figures


def train_command(
    table: Path, workdir: Path, name: str, eval_rows: int | None, streaming: str
) -> tuple[list[str], dict[str, str]]:
    """The ``redblue train`` command line of the table, and its environment."""
    sets = {
        "name": name,
        "data.source": str(table),
        "data.label": "y",
        "model.hidden": "[64]",
        "optim.batch_size": 512,
        "optim.epochs": 1,
        "scaling.num_workers": 2,
        "checkpoint.every_rounds": 10**6,
        "data.streaming": streaming,
        "data.split": "hash",
    }
    if eval_rows is not None:
        sets["strategy.eval_rows"] = eval_rows
    command = [sys.executable, "-m", "orchestrator.cli", "train", str(REPO / "configs/digits.yaml")]
    command += [arg for key, value in sets.items() for arg in ("--set", f"{key}={value}")]
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": f"sqlite:///{workdir / 'mlflow.db'}",
        "REDBLUE_CACHE": str(workdir / "cache"),  # a streamed table's statistics, kept
    }
    env.pop("RAY_ADDRESS", None)
    return command, env


def train(table: Path, workdir: Path, name: str, eval_rows: int | None, streaming: str) -> dict:
    """One ``redblue train`` of the table; its figures."""
    from mlflow.tracking import MlflowClient

    command, env = train_command(table, workdir, name, eval_rows, streaming)
    started = time.perf_counter()
    process = subprocess.Popen(
        command, cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    memory = PeakMemory(process.pid)
    out, err = process.communicate()
    wall = time.perf_counter() - started
    peaks = memory.stop()
    if process.returncode != 0:
        raise RuntimeError(f"{name} exited {process.returncode}:\n{err[-3000:]}")
    first = FIRST_STEP.search(err)
    pass_time = STATS_PASS.search(err)
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    experiment = client.get_experiment_by_name(name)
    (run,) = client.search_runs([experiment.experiment_id])
    rates = [m.value for m in client.get_metric_history(run.info.run_id, "samples_per_s")]
    return {
        "wall_s": wall,
        "train_s": run.data.metrics["train_seconds"],
        "rounds": len(rates),
        "samples_per_s": float(np.median(rates)),
        "first_step_s": float(first.group(1)) if first else float("nan"),
        "stats_pass_s": float(pass_time.group(1)) if pass_time else float("nan"),
        **peaks,
        "test_accuracy": run.data.metrics["test_accuracy"],
    }


def read_floor(table: Path) -> float:
    """Seconds to read every file of the table with pyarrow alone, in batches as the pass reads
    them, on as many threads as the machine has cores: what any pass over the rows costs at
    least here."""
    from concurrent.futures import ThreadPoolExecutor

    import pyarrow.parquet as pq

    def read(path: Path) -> int:
        return sum(b.num_rows for b in pq.ParquetFile(path).iter_batches(batch_size=65_536))

    started = time.perf_counter()
    with ThreadPoolExecutor(os.cpu_count()) as pool:
        rows = sum(pool.map(read, sorted(table.glob("*.parquet"))))
    assert rows
    return time.perf_counter() - started


def first_step(
    table: Path, workdir: Path, name: str, eval_rows: int | None, streaming: str
) -> dict:
    """The time to the first optimizer step of a run of the table, stopped there, and how long
    its statistics pass took (NaN when the statistics were kept from an earlier pass)."""
    command, env = train_command(table, workdir, name, eval_rows, streaming)
    process = subprocess.Popen(
        command, cwd=workdir, env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True
    )
    assert process.stderr is not None
    figures = {"first_step_s": float("nan"), "stats_pass_s": float("nan")}
    kept = False
    for line in process.stderr:
        kept = kept or "kept from an earlier pass" in line
        pass_time = STATS_PASS.search(line)
        if pass_time and not kept:
            figures["stats_pass_s"] = float(pass_time.group(1))
        found = FIRST_STEP.search(line)
        if found:
            figures["first_step_s"] = float(found.group(1))
            break
    process.send_signal(signal.SIGINT)
    try:
        process.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", default="1000000,4000000", help="comma-separated table sizes")
    parser.add_argument("--streaming", default="on,off", help="data.streaming values to run")
    parser.add_argument(
        "--max-in-memory", type=int, default=10_000_000, help="largest table read into memory"
    )
    parser.add_argument("--eval-rows", type=int, default=None, help="strategy.eval_rows")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    parser.add_argument(
        "--first-step-only",
        action="store_true",
        help="stop each run at its first step: the start-up and the statistics pass alone",
    )
    args = parser.parse_args()
    sizes = [int(size) for size in args.rows.split(",")]
    modes = args.streaming.split(",")
    results: dict[tuple[int, str], dict] = {}
    with tempfile.TemporaryDirectory(prefix="redblue-scale-") as folder:
        workdir = Path(folder)
        for rows in sizes:
            table = workdir / f"table-{rows}"
            size = write_table(table, rows)
            for mode in modes:
                if mode == "off" and rows > args.max_in_memory:
                    continue
                name = f"scale-{rows}-{mode}"
                if args.first_step_only:
                    figures = first_step(table, workdir, name, args.eval_rows, mode)
                else:
                    figures = train(table, workdir, name, args.eval_rows, mode)
                if mode == "on":
                    figures["read_floor_s"] = read_floor(table)
                    again = first_step(table, workdir, f"{name}-again", args.eval_rows, mode)
                    figures["first_step_again_s"] = again["first_step_s"]
                figures["parquet_mb"] = size / 1e6
                results[rows, mode] = figures
                print(f"{rows:,} rows, streaming {mode}: {json.dumps(figures)}", file=sys.stderr)
            shutil.rmtree(table)
    print_tables(results, sizes)
    if args.json:
        args.json.write_text(json.dumps({f"{r}/{m}": f for (r, m), f in results.items()}, indent=2))


def print_tables(results: dict[tuple[int, str], dict], sizes: list[int]) -> None:
    """One row per run ("-" where a run stopped at its first step has no figure), then the
    ratios the targets read."""
    columns = [
        ("wall s", "wall_s", ".0f"),
        ("train s", "train_s", ".0f"),
        ("rounds", "rounds", "d"),
        ("samples/s", "samples_per_s", ",.0f"),
        ("first step s", "first_step_s", ".1f"),
        ("first step again s", "first_step_again_s", ".1f"),
        ("statistics pass s", "stats_pass_s", ".1f"),
        ("read alone s", "read_floor_s", ".1f"),
        ("peak RSS GB", "peak_memory_gb", ".1f"),
        ("peak PSS GB", "peak_pss_gb", ".1f"),
        ("test accuracy", "test_accuracy", ".4f"),
    ]
    print("| rows | streaming | " + " | ".join(title for title, _, _ in columns) + " |")
    print("| ---: | --- |" + " ---: |" * len(columns))
    for (rows, mode), f in results.items():
        cells = [format(f[key], spec) if key in f else "-" for _, key, spec in columns]
        print(f"| {rows:,} | {mode} | " + " | ".join(cells) + " |")
    for rows in sizes:
        both = results.get((rows, "on")), results.get((rows, "off"))
        if both[0] and both[1] and "samples_per_s" in both[0]:
            print(
                f"{rows:,} rows: streamed / in-memory samples/s "
                f"{both[0]['samples_per_s'] / both[1]['samples_per_s']:.2f}, test accuracy "
                f"{both[0]['test_accuracy']:.4f} vs {both[1]['test_accuracy']:.4f}"
            )
    streamed = [results[r, "on"] for r in sizes if (r, "on") in results]
    if len(streamed) > 1:
        first, last = streamed[0], streamed[-1]
        growth = [
            f"first step {last['first_step_s'] - first['first_step_s']:+.1f} s (started again: "
            f"{last['first_step_again_s'] - first['first_step_again_s']:+.1f} s; reading alone: "
            f"{last['read_floor_s'] - first['read_floor_s']:+.1f} s)"
        ]
        if "wall_s" in first:
            growth += [
                f"peak RSS x{last['peak_memory_gb'] / first['peak_memory_gb']:.2f}",
                f"peak PSS x{last['peak_pss_gb'] / first['peak_pss_gb']:.2f}",
                f"wall time x{last['wall_s'] / first['wall_s']:.2f} (wall / row "
                f"x{last['wall_s'] / first['wall_s'] * sizes[0] / sizes[-1]:.2f})",
            ]
        print(f"streamed, {sizes[0]:,} to {sizes[-1]:,} rows: " + ", ".join(growth))


if __name__ == "__main__":
    main()
