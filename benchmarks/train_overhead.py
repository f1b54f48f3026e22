"""Training overhead of Redblue against plain PyTorch, all in one run, same model, data and steps.

For three models (the demo MLP, a compute-bound 2048-wide MLP at batch 256, and the LSTM of
``configs/digits_rows.yaml`` on sequences of 3 to 8 steps) it measures
steady-state samples/s and the time from command start to the first optimizer step of:

  (a) ``redblue train`` : 2 Ray Train workers, ``deepspeed.zero_stage: auto`` (the default:
                          ZeRO-0 for these models), the standard strategy and red-blue
  (b) plain PyTorch DDP : 2 processes, gloo on 127.0.0.1, 1 thread each (like a 1-CPU worker)
  (d) plain DeepSpeed   : 2 processes, the stage (a) runs, no Ray (DeepSpeed apart from Ray)
  (c) plain loop        : 1 process, 1 thread

and the peak resident memory of one worker process (the largest over (a)'s Ray Train workers;
rank 0's own peak for the plain loops), and prints the ratios (a)/(b), (d)/(b), (a)/(d) and
(a)/(c). Run: ``make bench`` or
``python benchmarks/train_overhead.py [--sizes small,large,lstm] [--zero-stage auto]
[--json out.json]``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SIZES = {
    # name: (model.hidden, global batch size, epochs over P')
    "small": ([128, 64], 64, 48),
    "large": ([2048, 2048], 256, 24),
    "lstm": (64, 64, 36),  # the LSTM of configs/digits_rows.yaml, on the digit rows
}


def config_file(size: str) -> Path:
    return REPO / "configs" / ("digits_rows.yaml" if size == "lstm" else "digits.yaml")


WARMUP_STEPS = 10  # excluded from the steady-state rate of the plain loops


def overrides(
    size: str, strategy: str = "standard", workers: tuple[str, str] = ("2", "1")
) -> list[str]:
    """The run's settings; ``workers``: scaling.num_workers and cpus_per_worker."""
    hidden, batch, epochs = SIZES[size]
    values = {
        "name": f"bench-{size}",
        "strategy.kind": strategy,
        "strategy.eval_every": 1000,
        "deepspeed.zero_stage": os.environ.get("BENCH_ZERO_STAGE", "auto"),  # --zero-stage
        "model.hidden": json.dumps(hidden),
        "model.dropout": 0.0,
        "optim.batch_size": batch,
        "optim.epochs": epochs,
        "optim.schedule": "constant",
        "optim.warmup_steps": 0,
        "optim.grad_clip": 0.0,
        "checkpoint.every_rounds": 1000,
        "scaling.num_workers": workers[0],
        "scaling.cpus_per_worker": workers[1],
    }
    return [f"{key}={value}" for key, value in values.items()]


# --- (a) redblue train ------------------------------------------------------------------------
def bench_redblue(
    size: str, workdir: Path, strategy: str, workers: tuple[str, str] = ("2", "1")
) -> dict:
    command = [sys.executable, "-m", "orchestrator.cli", "train", str(config_file(size))]
    for item in overrides(size, strategy, workers):
        command += ["--set", item]
    command += ["--set", f"run.storage_path={workdir / 'ray_results'}"]
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{workdir / 'mlflow.db'}"}
    started = time.time()
    peak: dict[int, int] = {}
    sampling = threading.Event()
    sampler = threading.Thread(target=sample_worker_rss, args=(peak, sampling), daemon=True)
    sampler.start()
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=workdir)
    wall = time.time() - started
    sampling.set()
    sampler.join()
    if done.returncode != 0:
        raise RuntimeError(f"redblue train failed:\n{done.stderr[-3000:]}")
    rates = [float(r.replace(",", "")) for r in re.findall(r"([\d,]+) samples/s", done.stdout)]
    first = re.search(r"first optimizer step ([\d.]+) s", done.stderr)
    stage = re.search(r"ZeRO-(\d)", done.stderr)
    steady = rates[1:] if len(rates) > 1 else rates
    return {
        "zero_stage": int(stage.group(1)) if stage else None,
        "samples_per_s": statistics.median(steady),
        "first_step_s": float(first.group(1)) if first else float("nan"),
        "wall_s": wall,
        "rounds": len(rates),
        "peak_rss_mb": max(peak.values(), default=0) / 1e6,
    }


def sample_worker_rss(peak: dict[int, int], stop: threading.Event) -> None:
    """The largest resident memory each Ray Train worker process reached, sampled every 0.1 s."""
    import psutil

    while not stop.wait(0.1):
        for process in psutil.process_iter(["cmdline"]):
            try:
                if "RayTrainWorker" in " ".join(process.info["cmdline"] or []):
                    rss = process.memory_info().rss
                    peak[process.pid] = max(peak.get(process.pid, 0), rss)
            except psutil.Error:
                continue


# --- (b), (c), (d): plain loops ---------------------------------------------------------------
def plain_steps(size: str) -> int:
    """The optimizer steps redblue takes for this size (its rounds rounded up)."""
    sys.path.insert(0, str(REPO))
    from orchestrator.config import load_config
    from trainers.loop.plan import plan_run

    plan = plan_run(load_config(config_file(size), overrides(size)))
    return plan.rounds.num_rounds * plan.rounds.steps_per_replica["standard"]


def plain_worker(
    rank: int, world: int, size: str, mode: str, steps: int, port: int, out: str, t0: float
) -> None:
    """One process of a plain loop: ``mode`` is single, single_all (on every core, also as
    single_all_fused), ddp or deepspeed."""
    import torch

    torch.set_num_threads(threads(mode))
    from orchestrator.config import load_config
    from trainers.loop.plan import plan_run
    from trainers.models import build_model

    plan = plan_run(load_config(config_file(size), overrides(size)))
    batch = SIZES[size][1] // world
    train = plan.split.train[rank::world]
    features = torch.as_tensor(plan.dataset.features)
    labels = torch.as_tensor(plan.dataset.labels)
    torch.manual_seed(0)
    model = build_model(plan.spec)
    # torch's default AdamW, as a plain loop has it; ``*_fused``: its fused form, as Redblue's
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=mode.endswith("_fused"))
    if not mode.startswith("single"):
        os.environ.update(
            MASTER_ADDR="127.0.0.1",
            MASTER_PORT=str(port),
            RANK=str(rank),
            WORLD_SIZE=str(world),
            LOCAL_RANK=str(rank),
        )
        torch.distributed.init_process_group("gloo", rank=rank, world_size=world)
    if mode == "ddp":
        model = torch.nn.parallel.DistributedDataParallel(model)
    engine = None
    if mode == "deepspeed":
        from trainers.prebuild import use_venv_build_cache

        os.environ["DS_ACCELERATOR"] = "cpu"
        use_venv_build_cache()
        import deepspeed

        from trainers.engine.deepspeed_engine import deepspeed_config
        from trainers.loop.zero_stage import resolve_zero_stage

        cfg = load_config(config_file(size), overrides(size))
        plan, _ = resolve_zero_stage(plan, cfg.model.model_dump(), world)
        engine, *_ = deepspeed.initialize(
            model=model,
            optimizer=optimizer,
            config=deepspeed_config(plan.loop.deepspeed, cfg.optim, plan.loop.micro_batch),
        )
    generator = torch.Generator().manual_seed(rank)
    first_step_at = tick = None
    for step in range(steps):
        index = train[torch.randint(len(train), (batch,), generator=generator).numpy()]
        outputs = (engine or model)(features[index])
        loss = torch.nn.functional.cross_entropy(outputs, labels[index])
        if engine is not None:
            engine.backward(loss)
            engine.step()
        else:
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        if step == 0:
            first_step_at = time.time()
        if step == WARMUP_STEPS - 1:
            tick = time.perf_counter()
    rate = (steps - WARMUP_STEPS) * SIZES[size][1] / (time.perf_counter() - tick)
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3  # KiB on Linux
    if rank == 0:
        measured = {"samples_per_s": rate, "first_step_s": first_step_at - t0}
        Path(out).write_text(json.dumps({**measured, "peak_rss_mb": peak_rss_mb}))
    if not mode.startswith("single"):
        torch.distributed.destroy_process_group()
    os._exit(0)  # a leftover non-daemon thread (gloo, DeepSpeed) must not keep the process alive


def threads(mode: str) -> int:
    """A plain loop's torch threads a process: every core for single_all, else 1."""
    return (os.cpu_count() or 1) if mode.startswith("single_all") else 1


def bench_plain(size: str, mode: str, steps: int) -> dict:
    """Run a plain loop in fresh processes, timed from their launch like a command."""
    world = 1 if mode.startswith("single") else 2
    out = tempfile.mktemp(suffix=".json")
    port = 29500 + os.getpid() % 1000
    code = (
        "import sys, torch.multiprocessing as mp; sys.path.insert(0, %r); "
        "from benchmarks.train_overhead import plain_worker; "
        "mp.spawn(plain_worker, args=(%d, %r, %r, %d, %d, %r, %r), nprocs=%d)"
    )
    t0 = time.time()
    command = code % (str(REPO), world, size, mode, steps, port, out, t0, world)
    subprocess.run(
        [sys.executable, "-c", command],
        check=True,
        cwd=REPO,
        env={**os.environ, "OMP_NUM_THREADS": str(threads(mode))},
    )
    return json.loads(Path(out).read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="small,large,lstm")
    parser.add_argument("--strategies", default="standard,red_blue", help="of (a)")
    parser.add_argument("--zero-stage", default="auto", help="of (a) and (d): auto, 0, 1, 2, 3")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    os.environ["BENCH_ZERO_STAGE"] = args.zero_stage  # read here and in the plain workers
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    results = {}
    for size in args.sizes.split(","):
        steps = plain_steps(size)
        row: dict = {"steps": steps}
        for strategy in args.strategies.split(","):
            with tempfile.TemporaryDirectory() as workdir:
                print(f"[{size}] {steps} steps: redblue train, {strategy} ...", flush=True)
                row[RUNS[strategy]] = bench_redblue(size, Path(workdir), strategy)
        for mode in ("ddp", "deepspeed", "single"):
            print(f"[{size}] plain {mode} ...", flush=True)
            row[mode] = bench_plain(size, mode, steps)
        rate = {k: v["samples_per_s"] for k, v in row.items() if isinstance(v, dict)}
        row["ratios"] = {
            **{f"{run}/ddp": rate[run] / rate["ddp"] for run in rate if run.startswith("redblue")},
            "deepspeed/ddp": rate["deepspeed"] / rate["ddp"],
        }
        if "redblue" in rate:
            row["ratios"]["redblue/deepspeed"] = rate["redblue"] / rate["deepspeed"]
            row["ratios"]["redblue/single"] = rate["redblue"] / rate["single"]
        results[size] = row
    print_table(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


RUNS = {"standard": "redblue", "red_blue": "redblue-rb"}


def print_table(results: dict) -> None:
    print(f"\n{'size':6} {'run':10} {'samples/s':>10} {'first step s':>13} {'peak MB':>8} ZeRO")
    for size, row in results.items():
        for run in (*RUNS.values(), "ddp", "deepspeed", "single"):
            if run not in row:
                continue
            r = row[run]
            print(
                f"{size:6} {run:10} {r['samples_per_s']:>10,.0f} {r['first_step_s']:>13.1f} "
                f"{r['peak_rss_mb']:>8,.0f} {r.get('zero_stage', '')}"
            )
        ratios = "  ".join(f"{k} {v:.2f}" for k, v in row["ratios"].items())
        print(f"{size:6} ratios     {ratios}")


if __name__ == "__main__":
    main()
