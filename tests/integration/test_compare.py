"""`redblue compare` end to end: a real Tune grid of Ray Train DeepSpeed runs of a named
strategy (red-blue with pruning, by its alias) and standard training, added to it, paired by
seed, recorded in MLflow; SIGTERM part way, then --resume finishes it without training again
what had finished. (Three strategies' parent metrics: tests/unit/test_compare_rules.py.)"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pandas as pd
import pytest

from orchestrator.compare.strategies import NAMED
from tests.helpers import start_until_a_trial_finished

pytestmark = pytest.mark.integration

DELTA = "delta/red_blue_prune/"  # its paired differences from standard: delta/<S>/<M>_<what>
RATIO = "red_blue_prune/compute_ratio"
CONFIG = (
    "name: compare-test\n"
    "optim: {epochs: 2, lr: 0.005}\n"
    "scaling: {num_workers: 1, cpus_per_worker: 1}\n"
    "checkpoint: {every_rounds: 1, keep: 1}\n"
)  # children run at once, one CPU each


def test_compare_interrupted_by_sigterm_then_resumed(ray_session, tmp_path, mlflow_client):
    config = tmp_path / "compare.yaml"
    config.write_text(CONFIG)
    command = [sys.executable, "-m", "orchestrator.cli", "compare", str(config), "--seeds", "2"]
    command += ["--strategies", "red_blue_clean"]  # the alias of red_blue_prune; standard added
    env = {**os.environ, "RAY_ADDRESS": ray_session}  # a job on the session's Ray
    driver, finished_before = start_until_a_trial_finished(
        command, tmp_path, env, mlflow_client, "compare-test"
    )
    driver.send_signal(signal.SIGTERM)
    assert driver.wait(timeout=120) == 130, (tmp_path / "first.log").read_text()[-3000:]
    experiment = mlflow_client.get_experiment_by_name("compare-test")
    parents = mlflow_client.search_runs(
        [experiment.experiment_id], filter_string="tags.`redblue.kind` = 'compare'"
    )
    assert len(parents) == 1 and parents[0].info.status == "RUNNING"  # kept for --resume

    resumed = subprocess.run(
        [*command, "--resume"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "resuming compare" in resumed.stderr
    parent = mlflow_client.get_run(parents[0].info.run_id)
    assert parent.info.status == "FINISHED"
    runs = mlflow_client.search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'",
    )
    strategies = ("red_blue_prune", "standard")
    assert sorted((r.data.tags["redblue.strategy"], r.data.tags["redblue.seed"]) for r in runs) == [
        (strategy, seed) for strategy in strategies for seed in "01"
    ]
    assert all(r.info.status == "FINISHED" for r in runs)
    for run in runs:  # children that had finished were not trained again
        if run.info.run_id in finished_before:
            assert run.info.end_time == finished_before[run.info.run_id]
        named = NAMED[run.data.tags["redblue.strategy"]]
        assert run.data.params["strategy.kind"] == named["strategy.kind"]
        assert run.data.params["strategy.clean"] == named["strategy.clean"]
        assert run.data.params["seed"] == run.data.tags["redblue.seed"]
        assert run.data.params["data.dropped_rows"] == parent.data.params["data.dropped_rows"]
        assert "val_loss_jitter" in run.data.metrics

    metrics = parent.data.metrics
    for key in (
        "standard/test_accuracy_mean",
        "standard/test_accuracy_std",
        "standard/gap_mean",
        "red_blue_prune/test_accuracy_mean",
        "red_blue_prune/test_accuracy_std",
        "red_blue_prune/test_loss_mean",
        "red_blue_prune/gap_mean",
        "standard/val_loss_jitter_mean",
        "red_blue_prune/val_loss_jitter_mean",
        DELTA + "test_accuracy_mean",
        DELTA + "test_loss_mean",
        DELTA + "val_loss_jitter_mean",
        RATIO,
    ):
        assert key in metrics, key
    key = DELTA + "test_accuracy"
    if f"{key}_p_value" in metrics:  # absent only when a difference had no spread
        assert metrics[f"{key}_p_value"] <= metrics[f"{key}_p_holm"] <= 1
    by_child = {
        (r.data.tags["redblue.strategy"], r.data.tags["redblue.seed"]): r.data.metrics for r in runs
    }
    red = [by_child[("red_blue_prune", s)]["test_accuracy"] for s in "01"]
    standard = [by_child[("standard", s)]["test_accuracy"] for s in "01"]
    assert metrics[DELTA + "test_accuracy_mean"] == pytest.approx(
        (red[0] - standard[0] + red[1] - standard[1]) / 2
    )
    assert 0.2 < metrics[RATIO] < 5
    artifacts = {a.path for a in mlflow_client.list_artifacts(parent.info.run_id)}
    assert {"comparison.csv", "comparison.png"} <= artifacts
    csv = mlflow_client.download_artifacts(parent.info.run_id, "comparison.csv", str(tmp_path))
    frame = pd.read_csv(csv)
    assert len(frame) == 4 and {"strategy", "seed", "train_seconds", "test_accuracy"} <= set(
        frame.columns
    )
    assert "paired t-test" in resumed.stdout and "Holm p" in resumed.stdout
    verdicts = parent.data.tags["redblue.verdict"].splitlines()
    assert len(verdicts) == 1 and resumed.stdout.count("verdict:") == 1
    assert all(line in " ".join(resumed.stdout.split()) for line in verdicts)
