"""Redblue's GAN against CTGAN on the penguins table, given the same wall-clock budget and scored
by the same quality report against the same test rows.

- **Redblue**: ``redblue train configs/penguins_gan.yaml`` (a conditional hinge GAN, red-blue,
  two DeepSpeed workers on a local Ray, MLflow on SQLite) in a fresh folder. Its wall time, from
  the command's start to its exit, is the budget; its ``test_quality`` is what its run logged
  (rows generated for the test part T's species, against T's rows).
- **CTGAN** (``ctgan``, sdv-dev): fitted on the same training pool P' (the rows the GAN trained
  on, T and V withheld; a gap in a number column filled with P''s mean, as Redblue's
  preprocessing fills it, since CTGAN takes none), discrete columns island, sex, year and
  species, for as many epochs as fit in the budget (a fit's fixed cost and its cost per epoch
  timed on two first fits, of ``CALIBRATION_EPOCHS`` and four times as many); then as many rows
  of each species as T holds, sampled by conditioning on it, scored by
  ``trainers.data.table_quality``.

``ctgan`` pins pandas below 3 (through ``rdt``), under the pandas Redblue runs, so it runs in a
virtual environment of its own, ``benchmarks/.ctgan-venv``, made on the first run (``pip install
ctgan``, with the CPU torch pin where there is no GPU).

    python benchmarks/gan_vs_ctgan.py [--seeds 1]
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

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "penguins_gan.yaml"
VENV = REPO / "benchmarks" / ".ctgan-venv"
CALIBRATION_EPOCHS = 10
DISCRETE = ["island", "sex", "year", "species"]

CTGAN_SCRIPT = """
import json, sys, time
import pandas as pd
from ctgan import CTGAN

pool, counts, budget, calibration, seed, out = sys.argv[1:7]
rows = pd.read_csv(pool)
discrete = [c for c in json.loads(sys.argv[7]) if c in rows.columns]
for column in discrete:
    rows[column] = rows[column].astype(str)
def fit_seconds(epochs):
    started = time.perf_counter()
    CTGAN(epochs=epochs).fit(rows, discrete)
    return time.perf_counter() - started

# Two fits (after one that warms up): a fit's fixed cost (fitting its data transformer) and its
# cost per epoch.
fit_seconds(1)
short, long = int(calibration), 4 * int(calibration)
short_s, long_s = fit_seconds(short), fit_seconds(long)
per_epoch = (long_s - short_s) / (long - short)
fixed = max(0.0, short_s - short * per_epoch)
epochs = max(1, int((float(budget) - fixed) / per_epoch))
import torch
torch.manual_seed(int(seed))
model = CTGAN(epochs=epochs)
started = time.perf_counter()
model.fit(rows, discrete)
took = time.perf_counter() - started
parts = [
    model.sample(n, condition_column="species", condition_value=str(species))
    for species, n in json.loads(counts).items()
]
pd.concat(parts).to_csv(out, index=False)
print(json.dumps({"epochs": epochs, "fit_seconds": took, "per_epoch": per_epoch, "fixed": fixed}))
"""


def ctgan_python() -> Path:
    """The Python of the benchmark's own environment with ctgan, made on the first call."""
    python = VENV / "bin" / "python"
    if not python.exists():
        print(f"making {VENV} (ctgan needs pandas below 3) ...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        constraints = [] if _has_gpu() else ["-c", str(REPO / "constraints" / "cpu.txt")]
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", "ctgan", *constraints], check=True
        )
    return python


def _has_gpu() -> bool:
    return (
        subprocess.run(["sh", "-c", "command -v nvidia-smi"], capture_output=True).returncode == 0
    )


def split_rows(seed: int) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """P' and T of the config's split (raw rows, the label last) and its number columns."""
    from orchestrator.config import load_config
    from trainers.data.preprocessing import of_model
    from trainers.loop.plan import plan_run

    cfg = load_config(CONFIG, [f"seed={seed}"])
    plan = plan_run(cfg)
    fitted = of_model(plan.spec)
    label = plan.spec.preprocessing["generation"]["label"]
    classes = pd.Series(plan.spec.classes, dtype=object)

    def rows(part):
        frame = plan.dataset.raw_rows(part)[fitted.names].reset_index(drop=True)
        return frame.assign(**{label: classes[plan.dataset.labels[part]].to_numpy()})

    numbers = [c.name for c in fitted.columns if c.type == "number"]
    return rows(plan.split.train), rows(plan.split.test), numbers


def redblue_run(seed: int, folder: Path) -> tuple[float, dict[str, float]]:
    """Wall time of ``redblue train`` and its run's test metrics."""
    import mlflow

    started = time.perf_counter()
    subprocess.run(
        [str(REPO / ".venv" / "bin" / "redblue"), "train", str(CONFIG), "--set", f"seed={seed}"],
        cwd=folder,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    wall = time.perf_counter() - started
    client = mlflow.MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("penguins-gan")
    (run,) = client.search_runs([experiment.experiment_id], max_results=1)
    return wall, run.data.metrics


def main() -> None:
    from trainers.data.table_quality import quality

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=1)
    args = parser.parse_args()
    python = ctgan_python()
    rows = []
    for seed in range(args.seeds):
        pool, test, numbers = split_rows(seed)
        with tempfile.TemporaryDirectory() as scratch:
            folder = Path(scratch)
            budget, metrics = redblue_run(seed, folder)
            # CTGAN takes no gap in a number column: P''s mean fills it, as Redblue's does.
            pool.fillna(pool[numbers].mean()).to_csv(folder / "pool.csv", index=False)
            counts = test["species"].value_counts().to_dict()
            out = folder / "ctgan.csv"
            env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
            done = subprocess.run(
                [str(python), "-c", CTGAN_SCRIPT, str(folder / "pool.csv"), json.dumps(counts),
                 str(budget), str(CALIBRATION_EPOCHS), str(seed), str(out), json.dumps(DISCRETE)],
                capture_output=True, text=True, env=env,
            )  # fmt: skip
            if done.returncode:
                raise SystemExit(f"CTGAN failed:\n{done.stderr[-3000:]}")
            fitted = json.loads(done.stdout.strip().splitlines()[-1])
            generated = pd.read_csv(out)
            for column in ("island", "sex", "species"):
                generated[column] = (
                    generated[column]
                    .astype(object)
                    .where(generated[column].astype(str) != "nan", None)
                )
            scores = quality(test, generated[test.columns], numbers)
        rows.append(
            {
                "seed": seed,
                "budget_s": round(budget, 1),
                "redblue_quality": round(metrics["test_quality"], 4),
                "redblue_shapes": round(metrics["test_column_shapes"], 4),
                "redblue_pairs": round(metrics["test_column_pair_trends"], 4),
                "redblue_fd": round(metrics["test_fd"], 3),
                "redblue_fd_real": round(metrics["test_fd_real"], 3),
                "ctgan_epochs": fitted["epochs"],
                "ctgan_fit_s": round(fitted["fit_seconds"], 1),
                "ctgan_quality": round(scores["quality"], 4),
                "ctgan_shapes": round(scores["column_shapes"], 4),
                "ctgan_pairs": round(scores["column_pair_trends"], 4),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    print(pd.DataFrame(rows).to_string(index=False))


if __name__ == "__main__":
    main()
