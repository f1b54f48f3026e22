"""Sweep overhead and ASHA against FIFO, all in one run, on the digits config.

1. Overhead: the wall time of an N-trial ``redblue sweep`` of identical trials against the
   ideal, N x the wall time of one identical ``redblue train`` / the concurrency (ratio).
2. ASHA against FIFO on the same space, seed and number of samples: the best ``val_loss`` reached
   and the compute spent, in trial-rounds (the rounds every trial ran, summed).

Goals (issue 3): overhead ratio <= 1.15; ASHA's best within 10% of FIFO's with at most half its
compute. Run: ``python benchmarks/sweep_overhead.py [--trials 4] [--samples 8] [--set k=v]...
[--json out.json]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs/digits.yaml"
COMMON = [
    "optim.epochs=6",
    "scaling.cpus_per_worker=1",
    "checkpoint.every_rounds=5",
]
SPACE = (
    "sweep.space={optim.lr: {loguniform: [0.0003, 0.01]}, "
    "optim.batch_size: {choice: [32, 64, 128]}, strategy.red_ratio: {uniform: [0.3, 0.7]}}"
)


def run(command: list[str], workdir: Path) -> float:
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{workdir / 'mlflow.db'}"}
    env.pop("RAY_ADDRESS", None)
    started = time.time()
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=workdir)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command[3:5])} failed:\n{done.stderr[-3000:]}")
    return time.time() - started


def cli(*args: str, sets: list[str]) -> list[str]:
    command = [sys.executable, "-m", "orchestrator.cli", *args]
    for item in sets:
        command += ["--set", item]
    return command


def trial_stats(workdir: Path, experiment: str) -> tuple[float, int, int]:
    """(best val_loss over finished trials, trial-rounds spent, trials stopped early)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id], filter_string="tags.`redblue.kind` = 'trial'")
    finished = [r.data.metrics["val_loss"] for r in runs if r.info.status == "FINISHED"]
    rounds = sum(int(r.data.metrics.get("round", 0)) for r in runs)
    stopped = sum(r.info.status == "KILLED" for r in runs)
    return min(finished), rounds, stopped


def overhead(trials: int, workdir: Path) -> dict:
    sets = [
        *COMMON,
        "name=bench-overhead",
        "sweep.scheduler=fifo",
        "sweep.max_concurrent=1",
        "sweep.space={optim.lr: {choice: [0.003]}}",
    ]
    single = run(cli("train", str(CONFIG), sets=sets), workdir)
    swept = run(cli("sweep", str(CONFIG), "-n", str(trials), sets=sets), workdir)
    ideal = trials * single / 1
    return {
        "trials": trials,
        "concurrency": 1,
        "train_wall_s": single,
        "sweep_wall_s": swept,
        "ideal_s": ideal,
        "ratio": swept / ideal,
    }


def asha_vs_fifo(samples: int, workdir: Path, extra: list[str]) -> dict:
    out = {}
    for scheduler in ("fifo", "asha"):
        name = f"bench-{scheduler}"
        sets = [
            *COMMON,
            f"name={name}",
            f"sweep.scheduler={scheduler}",
            "sweep.max_concurrent=1",
            SPACE,
            *extra,
        ]
        wall = run(cli("sweep", str(CONFIG), "-n", str(samples), sets=sets), workdir)
        best, rounds, stopped = trial_stats(workdir, name)
        out[scheduler] = {
            "best_val_loss": best,
            "trial_rounds": rounds,
            "stopped_early": stopped,
            "wall_s": wall,
        }
        print(json.dumps({scheduler: out[scheduler]}), flush=True)
    out["best_ratio"] = out["asha"]["best_val_loss"] / out["fifo"]["best_val_loss"]
    out["compute_ratio"] = out["asha"]["trial_rounds"] / out["fifo"]["trial_rounds"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--skip-overhead", action="store_true", help="only ASHA against FIFO")
    parser.add_argument(
        "--skip-schedulers", action="store_true", help="only the overhead, no ASHA against FIFO"
    )
    parser.add_argument(
        "--set", dest="sets", action="append", default=[], help="config override for both sweeps"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="redblue-sweep-bench-") as tmp:
        workdir = Path(tmp)
        result = {}
        if not args.skip_overhead:
            result["overhead"] = o = overhead(args.trials, workdir)
            print(
                f"overhead: {o['trials']} trials {o['sweep_wall_s']:.0f} s vs ideal "
                f"{o['ideal_s']:.0f} s -> ratio {o['ratio']:.2f} (goal <= 1.15)",
                flush=True,
            )
        if not args.skip_schedulers:
            result["asha_vs_fifo"] = a = asha_vs_fifo(args.samples, workdir, args.sets)
            print(
                f"ASHA vs FIFO: best val_loss {a['asha']['best_val_loss']:.4f} vs "
                f"{a['fifo']['best_val_loss']:.4f} (ratio {a['best_ratio']:.2f}, goal <= 1.10); "
                f"trial-rounds {a['asha']['trial_rounds']} vs {a['fifo']['trial_rounds']} "
                f"(ratio {a['compute_ratio']:.2f}, goal <= 0.5); "
                f"{a['asha']['stopped_early']} trials stopped early"
            )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
