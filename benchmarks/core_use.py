"""How much of the machine's arithmetic `redblue train` uses, in one run.

On a machine with C cores it measures:

  peak      : a plain single-process fp32 matmul (2048 x 2048 by 2048 x 2048) on C torch threads,
              its FLOP/s (2 n^3 a product);
  (a) auto  : `redblue train` of the compute-bound MLP ([2048, 2048] at batch 256, as in
              ``train_overhead.py``) with ``scaling.num_workers: auto`` (the default), standard and
              red-blue;
  (a) 2 x 1 : the same with two 1-CPU workers (the bundled configs' shape before auto);
  (b) DDP   : plain PyTorch DDP, 2 processes of 1 thread (``train_overhead.py``'s baseline);
  (c) plain : a plain single-process loop on C threads (what one process gets from the cores),
              with torch's default AdamW (single_all) and with its fused form, as Redblue's
              (single_all_fused);

and the training FLOP/s of each, 6 x the multiply-adds of a sample's forward pass x samples/s
(forward 2, backward 4), over the peak. Goal: (a) auto >= 0.7 of the peak. ``--sizes`` adds the
demo MLP and the LSTM (samples/s against DDP; their FLOP/s are not compute-bound).
Run: ``make bench`` or ``python benchmarks/core_use.py [--sizes large,small,lstm] [--json F]``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.train_overhead import bench_plain, bench_redblue, config_file, plain_steps  # noqa: E402

SHAPES = {"auto": ("auto", "auto"), "2x1": ("2", "1")}


def matmul_peak(threads: int, n: int = 2048, seconds: float = 5.0) -> float:
    """FLOP/s of repeated n x n fp32 products on ``threads`` torch threads, in this process."""
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        a @ b
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        a @ b
        count += 1
    return 2 * n**3 * count / (time.perf_counter() - started)


def multiply_adds(size: str) -> int:
    """A sample's forward multiply-adds in the model's linear layers (the MLP's all)."""
    import torch

    from benchmarks.train_overhead import overrides
    from orchestrator.config import load_config
    from trainers.loop.plan import plan_run
    from trainers.models import build_model

    plan = plan_run(load_config(config_file(size), overrides(size)))
    model = build_model(plan.spec)
    return sum(
        m.in_features * m.out_features for m in model.modules() if isinstance(m, torch.nn.Linear)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="large")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    cores = os.cpu_count() or 1
    peak = matmul_peak(cores)
    print(f"peak: {peak / 1e9:,.1f} GFLOP/s, fp32 matmul on {cores} threads", flush=True)
    results: dict = {"cores": cores, "peak_flops": peak}
    for size in args.sizes.split(","):
        row: dict = {"steps": plain_steps(size)}
        for shape, workers in SHAPES.items():
            for strategy in ("standard", "red_blue") if shape == "auto" else ("standard",):
                with tempfile.TemporaryDirectory() as workdir:
                    print(f"[{size}] redblue train {strategy}, workers {shape} ...", flush=True)
                    run = bench_redblue(size, Path(workdir), strategy, workers)
                row[f"{shape} {strategy}"] = run
        for mode in ("ddp", "single_all", "single_all_fused"):
            print(f"[{size}] plain {mode} ...", flush=True)
            row[mode] = bench_plain(size, mode, row["steps"])
        flops_per_sample = 6 * multiply_adds(size)
        for run in row.values():
            if isinstance(run, dict):
                run["vs_ddp"] = run["samples_per_s"] / row["ddp"]["samples_per_s"]
                run["of_peak"] = run["samples_per_s"] * flops_per_sample / peak
        results[size] = row
    print(
        f"\n{'size':6} {'run':18} {'samples/s':>10} {'/ DDP':>6} {'of peak':>8} {'first step':>10}"
    )
    for size, row in results.items():
        if not isinstance(row, dict):
            continue
        for name, run in row.items():
            if isinstance(run, dict):
                print(
                    f"{size:6} {name:18} {run['samples_per_s']:>10,.0f} {run['vs_ddp']:>6.2f} "
                    f"{run['of_peak']:>8.2f} {run['first_step_s']:>10.1f}"
                )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
