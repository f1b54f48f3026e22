"""The red-blue study: ``redblue compare`` (red-blue against standard training, paired by seed)
on the bundled data sets, on noisy-label and small-data variants of two of them, and with other
settings of the method, written as one Markdown table.

Every row is one ``redblue compare CONFIG --seeds N`` (default 5) with the config's own budget,
on one worker per training (``scaling.num_workers=1``) so that two trainings run at once on a
2-core machine. Run: ``python benchmarks/redblue_study.py [--seeds 5] [--output study.md]
[--only digits] [--regime "label noise"]``; it prints the table and its wall time, and writes
the table to ``--output``.

``--regime noisy`` is the label-noise study instead (``benchmarks/label_noise_study.py``):
label-issue detection and cleaning (``strategy.clean``) against standard training and a
two-stage cleanlab pipeline, in this process on plain PyTorch engines; ``--only`` and
``--seeds`` apply to it too. It needs cleanlab: ``pip install -e '.[bench]'``.
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COMMON = ["scaling.num_workers=1", "scaling.cpus_per_worker=1", "sweep.max_concurrent=2"]
# (data set, regime, overrides): the regimes change the training data or the method, never T, V.
ROWS = [
    ("digits", "all data", []),
    ("breast_cancer", "all data", []),
    ("wine", "all data", []),
    ("diabetes", "all data", []),
    ("digits", "label noise 0.2", ["data.label_noise=0.2"]),
    ("digits", "10% of the data", ["data.train_fraction=0.1"]),
    ("digits", "10% of the data, 5x the epochs", ["data.train_fraction=0.1", "optim.epochs=100"]),
    ("breast_cancer", "label noise 0.2", ["data.label_noise=0.2"]),
    ("breast_cancer", "10% of the data", ["data.train_fraction=0.1"]),
    ("digits", "red_ratio 0.3", ["strategy.red_ratio=0.3"]),
    ("digits", "fusion: loss", ["strategy.fusion=loss"]),
    ("digits", "fuse only at the end", ["strategy.fuse_every=0"]),
    (
        "digits",
        "label noise 0.2, red_ratio 0.3",
        ["data.label_noise=0.2", "strategy.red_ratio=0.3"],
    ),
]


def slug(data: str, regime: str) -> str:
    keep = "".join(c if c.isalnum() else "-" for c in f"{data}-{regime}")
    return "study-" + "-".join(part for part in keep.split("-") if part)


def compare(data: str, regime: str, overrides: list[str], seeds: int, workdir: Path) -> dict:
    """Run one comparison with the CLI; returns the parent run's metrics and tags."""
    from mlflow.tracking import MlflowClient

    name = slug(data, regime)
    sets = [f"name={name}", *COMMON, *overrides]
    command = [sys.executable, "-m", "orchestrator.cli", "compare", f"{REPO}/configs/{data}.yaml"]
    command += ["--seeds", str(seeds), *(arg for s in sets for arg in ("--set", s))]
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{workdir / 'mlflow.db'}"}
    env.pop("RAY_ADDRESS", None)
    started = time.time()
    done = subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{name} exited {done.returncode}:\n{done.stderr[-3000:]}")
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    experiment = client.get_experiment_by_name(name)
    parent = client.search_runs(
        [experiment.experiment_id],
        filter_string="tags.`redblue.kind` = 'compare'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )[0]
    print(f"{data} / {regime}: {time.time() - started:.0f} s", file=sys.stderr, flush=True)
    return {**parent.data.metrics, "verdict": parent.data.tags.get("redblue.verdict", "")}


def _mean_std(metrics: dict, key: str) -> str:
    mean, std = metrics.get(f"{key}_mean", math.nan), metrics.get(f"{key}_std", math.nan)
    return f"{mean:.4f} ± {std:.4f}"


def _delta(metrics: dict, key: str) -> str:
    p_value = metrics.get(f"delta/{key}_p_value", math.nan)
    tested = "no spread, no test" if math.isnan(p_value) else f"p = {p_value:.2g}"
    return f"{metrics.get(f'delta/{key}_mean', math.nan):+.4f} ({tested})"


def table(results: list[tuple[str, str, dict]]) -> str:
    header = (
        "| data set | regime | M | red-blue M | standard M | Δ M (p) | red-blue test loss | "
        "standard test loss | Δ test loss (p) | gap red-blue / standard | compute ratio |\n"
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n"
    )
    lines = []
    for data, regime, m in results:
        metric = "test_accuracy" if "red_blue/test_accuracy_mean" in m else "test_mse"
        gap = [m.get(f"{s}/gap_mean", math.nan) for s in ("red_blue", "standard")]
        gaps = f"{gap[0]:+.3f} / {gap[1]:+.3f}"
        lines.append(
            f"| {data} | {regime} | {metric} | {_mean_std(m, f'red_blue/{metric}')} | "
            f"{_mean_std(m, f'standard/{metric}')} | {_delta(m, metric)} | "
            f"{_mean_std(m, 'red_blue/test_loss')} | {_mean_std(m, 'standard/test_loss')} | "
            f"{_delta(m, 'test_loss')} | {gaps} | {m.get('compute_ratio', math.nan):.2f} |"
        )
    return header + "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--output", type=Path, default=Path("redblue_study.md"))
    parser.add_argument("--only", help="only the rows of this data set")
    parser.add_argument(
        "--regime",
        help="only the rows whose regime contains this text; noisy: the label-noise study",
    )
    args = parser.parse_args()
    if args.regime == "noisy":
        from label_noise_study import study

        print(study(args.seeds, args.only, args.output))
        return
    started = time.time()
    results = []
    with tempfile.TemporaryDirectory(prefix="redblue-study-") as folder:
        for data, regime, overrides in ROWS:
            if (args.only and data != args.only) or (args.regime and args.regime not in regime):
                continue
            results.append(
                (data, regime, compare(data, regime, overrides, args.seeds, Path(folder)))
            )
    minutes = (time.time() - started) / 60
    text = table(results)
    text += (
        f"\n{args.seeds} seeds per row; Δ is red-blue minus standard, paired by seed, with a "
        f"two-sided paired t-test; gap is final train loss minus test loss; compute ratio is "
        f"red-blue's training time over standard's. Wall time {minutes:.0f} min.\n"
    )
    args.output.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
