"""Time from the command to the first optimizer step: ``redblue train`` cold (a new local Ray)
and with a Ray already running, against plain PyTorch DDP in the same run.

  cold  : ``redblue train configs/digits.yaml --set optim.epochs=2`` in a fresh folder (a new
          MLflow database, a new local Ray on 127.0.0.1, stopped when the command ends)
  warm  : the same command in the environment ``redblue cluster up --nodes 1`` printed once
          before the runs: its Ray (``RAY_ADDRESS``) and its MLflow server
  ddp   : plain PyTorch DDP on the demo MLP (2 processes, gloo), timed from its launch

The cold and warm runs alternate, ``--runs`` of each; each also reports the CPU time the machine
spent until its first step (every core together), the floor on the time that work takes on
this machine's cores however well it overlaps. Run:
``python benchmarks/start_up.py [--runs 5] [--json out.json]``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.train_overhead import bench_plain, plain_steps  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
COMMAND = [sys.executable, "-m", "orchestrator.cli"]


def busy_core_seconds() -> float:
    """CPU time the machine has spent working (user, nice, system), every core together."""
    import psutil

    times = psutil.cpu_times()
    return times.user + times.nice + times.system


def first_step(env: dict[str, str]) -> tuple[float, float]:
    """Seconds from launching ``redblue train`` to its first optimizer step, in a fresh folder
    (and a fresh MLflow database there, unless ``env`` names a tracking server), and the CPU
    time the whole machine spent in them (sampled every 0.05 s: every process the run starts,
    and the rest of the machine, idle here)."""
    samples: list[tuple[float, float]] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            samples.append((time.monotonic(), busy_core_seconds()))
            time.sleep(0.05)

    with tempfile.TemporaryDirectory() as folder:
        train = [*COMMAND, "train", str(REPO / "configs" / "digits.yaml")]
        train += ["--set", "optim.epochs=2", "--set", f"run.storage_path={folder}/ray_results"]
        run_env = {"MLFLOW_TRACKING_URI": f"sqlite:///{folder}/mlflow.db", **env}
        sampler = threading.Thread(target=sample, daemon=True)
        started, busy_before = time.monotonic(), busy_core_seconds()
        sampler.start()
        try:
            done = subprocess.run(train, capture_output=True, text=True, env=run_env, cwd=folder)
        finally:
            stop.set()
            sampler.join()
        if done.returncode != 0:
            raise RuntimeError(f"redblue train failed:\n{done.stderr[-3000:]}")
        found = re.search(r"first optimizer step ([\d.]+) s", done.stderr)
        if found is None:
            raise RuntimeError(f"no first step in the output:\n{done.stderr[-3000:]}")
        seconds = float(found.group(1))
        _, busy_at_step = min(samples, key=lambda s: abs(s[0] - (started + seconds)))
        return seconds, busy_at_step - busy_before


def cluster_up(env: dict[str, str], folder: str) -> dict[str, str]:
    """Start a one-node Ray and MLflow server with ``redblue cluster up``; the environment its
    exports give (they read the MLflow password from a file, so a shell evaluates them)."""
    up = [*COMMAND, "cluster", "up", "--nodes", "1", "--cpus-per-node", str(os.cpu_count())]
    script = f'eval "$({shlex.join(up)})" && env -0'
    done = subprocess.run(
        ["bash", "-c", script], capture_output=True, text=True, env=env, check=True, cwd=folder
    )
    return dict(item.split("=", 1) for item in done.stdout.split("\0") if "=" in item)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="cold and warm runs, alternated")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "MLFLOW_DISABLE_TELEMETRY": "true"}
    for name in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI"):
        env.pop(name, None)
    results: dict[str, list[float]] = {"cold": [], "warm": [], "ddp": []}
    cpu: dict[str, list[float]] = {"cold": [], "warm": []}  # core-seconds until the first step
    state = tempfile.TemporaryDirectory()  # the cluster's state folder (.redblue) goes here
    warm_env = cluster_up(env, state.name)
    try:
        first, _ = first_step(warm_env)  # the cluster's first run pays for its own warm-up
        print(f"warm, the cluster's first run: {first:.1f} s", flush=True)
        for run in range(args.runs):
            for kind, run_env in (("cold", env), ("warm", warm_env)):
                seconds, core_seconds = first_step(run_env)
                results[kind].append(seconds)
                cpu[kind].append(core_seconds)
                print(
                    f"{kind} {run + 1}: {seconds:.1f} s, the machine's CPU busy "
                    f"{core_seconds:.1f} core-s until then",
                    flush=True,
                )
    finally:
        down = [*COMMAND, "cluster", "down"]
        subprocess.run(down, env=warm_env, capture_output=True, cwd=state.name)
        state.cleanup()
    for run in range(3):
        started = time.time()
        results["ddp"].append(bench_plain("small", "ddp", plain_steps("small"))["first_step_s"])
        print(f"ddp {run + 1}: {results['ddp'][-1]:.1f} s ({time.time() - started:.0f} s)")
    medians = {kind: statistics.median(values) for kind, values in results.items()}
    print(f"\n{'start':6} {'first step, each run (s)':40} {'median':>7} {'/ ddp':>6}")
    for kind, values in results.items():
        each = ", ".join(f"{value:.1f}" for value in values)
        print(f"{kind:6} {each:40} {medians[kind]:>7.1f} {medians[kind] / medians['ddp']:>6.2f}")
    cores = os.cpu_count() or 1
    for kind, values in cpu.items():
        median = statistics.median(values)
        print(
            f"{kind}: CPU busy until the first step {median:.1f} core-s (median): on {cores} "
            f"cores at least {median / cores:.1f} s of work"
        )
    if args.json:
        summary = {"runs": results, "medians": medians, "cpu_core_seconds": cpu}
        args.json.write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
