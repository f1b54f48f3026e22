"""Batch prediction: ``redblue predict`` (Ray Data) against the MLflow pyfunc model, same run.

Both predict the same model (the digits MLP, trained briefly by ``redblue train``, or ``--model``)
on the same rows: the 1,797 digits replicated to about 200,000 rows, in a folder of Parquet parts.
It reports rows per second of

  (a) ``redblue predict``: read the folder with Ray Data, ``map_batches`` through the model's
      actors, write the rows plus the predictions as Parquet; the command's own figure (from the
      pipeline's start to the last file written) and its wall time, Ray's start included;
  (b) the pyfunc model in this process: ``mlflow.pyfunc.load_model(uri).predict(frame)`` on the
      whole frame already in memory, and the same with the file read and the result written
      (read, predict, write: the work (a) does),

then the ratios (a)/(b). With ``--scale K`` it also runs (a) with one actor on K times the rows,
and reports its marginal rows/s (the extra rows over the extra seconds: the rate once Ray's
workers and the actors have started). Run: ``python benchmarks/predict_throughput.py
[--rows 200000] [--concurrency 1 2] [--scale 3] [--model URI] [--json out.json]``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
PARTS = 8  # Parquet files of the input folder, so that several actors get blocks to work on
SUMMARY = re.compile(r"predicted ([\d,]+) rows in ([\d.]+) s")


def environment(tracking_uri: str) -> dict[str, str]:
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri}
    env.pop("RAY_ADDRESS", None)  # a local Ray on 127.0.0.1 for each command
    return env


def train_model(workdir: Path, env: dict[str, str]) -> str:
    """A digits MLP from a short ``redblue train``; returns ``runs:/RUN_ID/model``."""
    from mlflow.tracking import MlflowClient

    command = [sys.executable, "-m", "orchestrator.cli", "train", str(REPO / "configs/digits.yaml")]
    for item in ("name=predict-bench", "optim.epochs=2", "checkpoint.every_rounds=100"):
        command += ["--set", item]
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=workdir)
    if done.returncode != 0:
        raise RuntimeError(f"redblue train failed:\n{done.stderr[-3000:]}")
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    experiment = client.get_experiment_by_name("predict-bench")
    (run,) = client.search_runs([experiment.experiment_id], max_results=1)
    return f"runs:/{run.info.run_id}/model"


def write_rows(folder: Path, rows: int) -> int:
    """Digits (features and target) replicated to at least ``rows`` rows, as PARTS files."""
    from sklearn.datasets import load_digits

    digits = load_digits(as_frame=True).frame
    frame = pd.concat([digits] * -(-rows // len(digits)), ignore_index=True)
    folder.mkdir(parents=True)
    for i, part in enumerate(np.array_split(np.arange(len(frame)), PARTS)):
        frame.iloc[part].to_parquet(folder / f"part-{i}.parquet", index=False)
    return len(frame)


def bench_redblue(uri: str, data: Path, workdir: Path, env: dict, concurrency: int) -> dict:
    output = workdir / f"out-{data.name}-{concurrency}.parquet"
    # Two cores: each actor reserves 1 CPU alone, 0.5 beside another (1 torch thread either way).
    cpus = "1" if concurrency == 1 else "0.5"
    command = [sys.executable, "-m", "orchestrator.cli", "predict", uri, str(data)]
    command += ["-o", str(output), "--concurrency", str(concurrency), "--cpus-per-actor", cpus]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=workdir)
    wall = time.perf_counter() - started
    found = SUMMARY.search(done.stdout)
    if done.returncode != 0 or not found:
        raise RuntimeError(f"redblue predict failed:\n{done.stdout[-2000:]}{done.stderr[-3000:]}")
    rows, seconds = int(found.group(1).replace(",", "")), float(found.group(2))
    return {
        "concurrency": concurrency,
        "cpus_per_actor": float(cpus),
        "rows": rows,
        "pipeline_s": seconds,
        "wall_s": wall,
        "rows_per_s": rows / seconds,
        "rows_per_s_wall": rows / wall,
    }


def bench_pyfunc(uri: str, data: Path, workdir: Path, env: dict) -> dict:
    """The pyfunc model in this process (torch's default threads: both cores)."""
    import mlflow

    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    started = time.perf_counter()
    model = mlflow.pyfunc.load_model(uri)
    load_s = time.perf_counter() - started

    frame = pd.read_parquet(data)
    model.predict(frame.head(100))  # warm-up
    started = time.perf_counter()
    model.predict(frame)
    predict_s = time.perf_counter() - started

    started = time.perf_counter()
    frame = pd.read_parquet(data)
    frame["prediction"] = model.predict(frame)
    frame.to_parquet(workdir / "pyfunc.parquet", index=False)
    end_to_end_s = time.perf_counter() - started
    rows = len(frame)
    return {
        "rows": rows,
        "load_s": load_s,
        "predict_s": predict_s,
        "end_to_end_s": end_to_end_s,
        "rows_per_s": rows / predict_s,
        "rows_per_s_end_to_end": rows / end_to_end_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--scale", type=int, default=3, help="0: no marginal rate")
    parser.add_argument("--model", help="a model URI in $MLFLOW_TRACKING_URI (default: train one)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="redblue-predict-bench-") as tmp:
        workdir = Path(tmp)
        local_store = f"sqlite:///{workdir / 'mlflow.db'}"
        env = environment(os.environ.get("MLFLOW_TRACKING_URI", "") if args.model else local_store)
        uri = args.model or train_model(workdir, env)
        data = workdir / "rows"
        rows = write_rows(data, args.rows)
        print(f"model {uri}; {rows:,} rows in {PARTS} Parquet files", flush=True)
        result: dict = {"model": uri, "rows": rows, "redblue": []}
        for concurrency in args.concurrency:
            r = bench_redblue(uri, data, workdir, env, concurrency)
            result["redblue"].append(r)
            print(
                f"(a) redblue predict, {concurrency} actor(s) of {r['cpus_per_actor']:g} CPU: "
                f"{r['rows_per_s']:,.0f} rows/s ({r['pipeline_s']:.1f} s; wall with Ray's start "
                f"{r['wall_s']:.1f} s = {r['rows_per_s_wall']:,.0f} rows/s)",
                flush=True,
            )
        result["pyfunc"] = p = bench_pyfunc(uri, data, workdir, env)
        print(
            f"(b) pyfunc in one process: predict(frame) {p['rows_per_s']:,.0f} rows/s "
            f"({p['predict_s']:.2f} s); read + predict + write {p['rows_per_s_end_to_end']:,.0f} "
            f"rows/s ({p['end_to_end_s']:.2f} s); load {p['load_s']:.1f} s",
            flush=True,
        )
        if args.scale > 1:
            big = write_rows(workdir / "more-rows", rows * args.scale)
            r = bench_redblue(uri, workdir / "more-rows", workdir, env, 1)
            one = [s for s in result["redblue"] if s["concurrency"] == 1]
            small = one[0] if one else bench_redblue(uri, data, workdir, env, 1)
            extra_s = r["pipeline_s"] - small["pipeline_s"]
            result["marginal"] = m = {"rows": big, "pipeline_s": r["pipeline_s"]}
            if extra_s <= 0:  # the machine was busier during the smaller run
                print(f"(a) 1 actor on {big:,} rows: {r['pipeline_s']:.1f} s; no marginal rate")
            else:
                m["rows_per_s"] = (big - rows) / extra_s
                m["ratio_to_predict"] = m["rows_per_s"] / p["rows_per_s"]
                print(
                    f"(a) 1 actor on {big:,} rows: {r['pipeline_s']:.1f} s; marginal rate "
                    f"{m['rows_per_s']:,.0f} rows/s, (a)/(b) {m['ratio_to_predict']:.2f} against "
                    "predict(frame)",
                    flush=True,
                )
        for r in result["redblue"]:
            r["ratio_to_predict"] = r["rows_per_s"] / p["rows_per_s"]
            r["ratio_to_end_to_end"] = r["rows_per_s"] / p["rows_per_s_end_to_end"]
            print(
                f"ratio (a)/(b), {r['concurrency']} actor(s): {r['ratio_to_predict']:.2f} against "
                f"predict(frame), {r['ratio_to_end_to_end']:.2f} against read + predict + write"
            )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
