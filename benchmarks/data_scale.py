"""How training scales with the table: a generated table of N rows x 32 float32 features and a
4-class label, trained by ``redblue train`` for one epoch (red-blue, ``model.hidden: [64]``,
batch 512, 2 workers), at several sizes in one run.

For each size it measures the wall time of the command, the training time of the rounds
(``train_seconds``), the rounds, training samples/s, the time to the first optimizer step, and the
peak resident memory summed over every process of the run (the driver and everything it starts:
the local Ray, its workers). The ratios that matter are between sizes of the same run: wall and
training time per row should stay flat (cost linear in the rows). ``--eval-rows`` sets
``strategy.eval_rows`` (default: the config's); a value at least the size of the table scores
every part in full at every evaluation.

Run: ``python benchmarks/data_scale.py [--rows 1000000,4000000] [--eval-rows N] [--json F]``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
FEATURES, CLASSES = 32, 4


def write_table(path: Path, rows: int, seed: int = 0) -> int:
    """A learnable table: the label is the argmax of a fixed linear map of the features, with
    10% of the labels drawn at random. Written in chunks, as Parquet; returns its size in bytes."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    weights = rng.normal(size=(FEATURES, CLASSES)).astype(np.float32)
    names = [f"x{i}" for i in range(FEATURES)]
    writer = None
    for start in range(0, rows, 1_000_000):
        count = min(1_000_000, rows - start)
        features = rng.normal(size=(count, FEATURES)).astype(np.float32)
        labels = (features @ weights).argmax(axis=1)
        noisy = rng.random(count) < 0.1
        labels[noisy] = rng.integers(0, CLASSES, size=int(noisy.sum()))
        table = pa.table({**{n: features[:, i] for i, n in enumerate(names)}, "y": labels})
        writer = writer or pq.ParquetWriter(path, table.schema)
        writer.write_table(table)
    assert writer is not None
    writer.close()
    return path.stat().st_size


class PeakMemory:
    """Samples the resident memory of a process and all its descendants, keeps the peak."""

    def __init__(self, pid: int, every_s: float = 0.5) -> None:
        self.pid, self.every_s, self.peak = pid, every_s, 0
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
            total = 0
            for process in processes:
                try:
                    total += process.memory_info().rss
                except psutil.Error:
                    continue
            self.peak = max(self.peak, total)
            self._stop.wait(self.every_s)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def train(table: Path, workdir: Path, name: str, eval_rows: int | None) -> dict:
    """One ``redblue train`` of the table; its figures."""
    from mlflow.tracking import MlflowClient

    sets = {
        "name": name,
        "data.source": str(table),
        "data.label": "y",
        "model.hidden": "[64]",
        "optim.batch_size": 512,
        "optim.epochs": 1,
        "scaling.num_workers": 2,
        "checkpoint.every_rounds": 10**6,
    }
    if eval_rows is not None:
        sets["strategy.eval_rows"] = eval_rows
    command = [sys.executable, "-m", "orchestrator.cli", "train", str(REPO / "configs/digits.yaml")]
    command += [arg for key, value in sets.items() for arg in ("--set", f"{key}={value}")]
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{workdir / 'mlflow.db'}"}
    env.pop("RAY_ADDRESS", None)
    started = time.perf_counter()
    process = subprocess.Popen(
        command, cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    memory = PeakMemory(process.pid)
    out, err = process.communicate()
    wall = time.perf_counter() - started
    peak = memory.stop()
    if process.returncode != 0:
        raise RuntimeError(f"{name} exited {process.returncode}:\n{err[-3000:]}")
    first = re.search(r"first optimizer step ([\d.]+) s after", err)
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
        "peak_memory_gb": peak / 1e9,
        "test_accuracy": run.data.metrics["test_accuracy"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", default="1000000,4000000", help="comma-separated table sizes")
    parser.add_argument("--eval-rows", type=int, default=None, help="strategy.eval_rows")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = parser.parse_args()
    sizes = [int(size) for size in args.rows.split(",")]
    results = {}
    with tempfile.TemporaryDirectory(prefix="redblue-scale-") as folder:
        workdir = Path(folder)
        for rows in sizes:
            table = workdir / f"table-{rows}.parquet"
            size = write_table(table, rows)
            figures = train(table, workdir, f"scale-{rows}", args.eval_rows)
            figures["parquet_mb"] = size / 1e6
            results[rows] = figures
            print(f"{rows:,} rows: {json.dumps(figures)}", file=sys.stderr, flush=True)
            table.unlink()
    first = sizes[0]
    print(
        "| rows | wall s | train s | rounds | samples/s | first step s | peak memory GB | "
        "test accuracy | wall / row vs first | train / row vs first |"
    )
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for rows, f in results.items():
        scale = rows / first
        wall_ratio = f["wall_s"] / results[first]["wall_s"] / scale
        train_ratio = f["train_s"] / results[first]["train_s"] / scale
        print(
            f"| {rows:,} | {f['wall_s']:.0f} | {f['train_s']:.0f} | {f['rounds']} | "
            f"{f['samples_per_s']:,.0f} | {f['first_step_s']:.1f} | {f['peak_memory_gb']:.1f} | "
            f"{f['test_accuracy']:.4f} | {wall_ratio:.2f} | {train_ratio:.2f} |"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
