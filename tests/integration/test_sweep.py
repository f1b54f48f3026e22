"""Sweeps on the shared local Ray: real Tune trials, each a Ray Train DeepSpeed run, recorded as
nested MLflow runs; the champion alias; and a resume after the driver is SIGKILLed.
(Population-based training: tests/integration/test_gan_runs.py.)"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import children, start_until_a_trial_finished

pytestmark = pytest.mark.integration

SPACE = {
    "optim.lr": {"loguniform": [0.002, 0.01]},
    "optim.batch_size": {"choice": [32, 64]},
    "strategy.red_ratio": {"uniform": [0.4, 0.6]},
}
SMALL = {
    "optim": {"epochs": 3},
    "scaling": {"num_workers": 1, "cpus_per_worker": 1},
    "checkpoint": {"every_rounds": 1, "keep": 1},
}


@pytest.fixture(scope="module")
def first_sweep(sweep):
    return sweep(
        "sweep-digits",
        **SMALL,
        sweep={"space": SPACE, "num_samples": 4, "max_concurrent": 2, "scheduler": "asha"},
    )


def test_four_trials_two_at_once_as_nested_runs(first_sweep, mlflow_client):
    code, summary = first_sweep
    assert code == 0 and summary is not None
    parent = mlflow_client.get_run(summary.parent_run_id)
    assert parent.data.tags["redblue.kind"] == "sweep"
    assert parent.info.status == "FINISHED"
    assert "space.optim.lr" in parent.data.params
    assert any(k.startswith("best.optim.") for k in parent.data.params)
    artifacts = {a.path for a in mlflow_client.list_artifacts(parent.info.run_id)}
    assert {
        "results.csv",
        "metric_vs_params.png",
        "best_config.yaml",
        "sweep_report.md",
        "parallel_coordinates.png",
        "trial_curves.png",
    } <= artifacts
    assert any(i.dataset.name == "digits" for i in parent.inputs.dataset_inputs)  # its lineage

    runs = children(mlflow_client, summary.parent_run_id)
    assert len(runs) == 4
    assert len({r.data.tags["redblue.trial_id"] for r in runs}) == 4  # one run per trial
    assert {r.info.status for r in runs} <= {"FINISHED", "KILLED"}
    for run in runs:
        history = mlflow_client.get_metric_history(run.info.run_id, "val_loss")
        assert history, run.data.tags
        assert "optim.lr" in run.data.params and run.data.tags["redblue.kind"] == "trial"
        assert run.data.tags["redblue.zero_stage"] == "0"  # auto, for the digits MLP
        if run.info.status == "KILLED":
            assert "redblue.stopped_early" in run.data.tags
        else:  # a finished trial carries the evaluation report of its model
            assert {"test_accuracy", "test_macro_f1", "test_f1_score"} <= set(run.data.metrics)
            report = {a.path for a in mlflow_client.list_artifacts(run.info.run_id)}
            assert {"confusion_matrix.json", "test_confusion_matrix.png", "roc_curve.png"} <= report
    # two trials ran at the same time
    spans = sorted((r.info.start_time, r.info.end_time) for r in runs)
    assert any(later[0] < earlier[1] for earlier, later in zip(spans, spans[1:], strict=False))


def test_best_finished_trial_is_champion(first_sweep, mlflow_client):
    _, summary = first_sweep
    runs = children(mlflow_client, summary.parent_run_id)
    finished = [r for r in runs if r.info.status == "FINISHED"]
    best = min(finished, key=lambda r: r.data.metrics["val_loss"])
    assert summary.best.run_id == best.info.run_id
    champion = mlflow_client.get_model_version_by_alias("sweep-digits", "champion")
    assert str(champion.version) == summary.version
    assert champion.tags["redblue.run_id"] == best.info.run_id
    assert champion.tags["redblue.sweep_run_id"] == summary.parent_run_id
    assert best.data.metrics["test_accuracy"] >= 0.8
    assert Path(summary.best_config_path).is_file()
    # only the best trial keeps its checkpoints
    trials_dir = Path(summary.best_config_path).parent / "trials"
    kept = [
        d.name
        for d in trials_dir.glob("trial-*")
        if any(p.is_dir() for p in d.glob("checkpoint_*"))
    ]
    assert kept == [f"trial-{summary.best.trial_id}"]


def test_a_worse_optuna_sweep_becomes_challenger_and_keeps_every_trials_checkpoints(
    first_sweep, sweep, mlflow_client, tmp_path
):
    """A second sweep of the same name over learning rates too small to learn, with
    ``sweep.search: optuna`` (TPE, seeded by ``seed``), ``sweep.keep_all_checkpoints`` and
    ``strategy.clean: report``: Optuna chose each trial's rate, every trial's checkpoints stay,
    the best trial's run reports its label issues, and its model becomes challenger."""
    import optuna

    from orchestrator.config import RedblueConfig

    _, first = first_sweep
    low, high = 1e-5, 1e-4
    code, summary = sweep(
        "sweep-digits",
        **{**SMALL, "optim": {"epochs": 1}},
        strategy={"clean": "report", "clean_start": 0.0},
        sweep={
            "space": {"optim.lr": {"loguniform": [low, high]}},
            "num_samples": 2,
            "max_concurrent": 2,
            "scheduler": "fifo",
            "search": "optuna",
            "keep_all_checkpoints": True,
        },
    )
    assert code == 0 and summary.alias == "challenger"
    runs = children(mlflow_client, summary.parent_run_id)
    assert len(runs) == 2 and all(r.info.status == "FINISHED" for r in runs)
    # The same sampler, asked the same way: its first suggestions are the trials' values.
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=RedblueConfig().seed))
    space = {"optim.lr": optuna.distributions.FloatDistribution(low, high, log=True)}
    expected = sorted(study.ask(space).params["optim.lr"] for _ in runs)
    sampled = sorted(float(r.data.params["optim.lr"]) for r in runs)
    assert sampled == pytest.approx(expected, rel=1e-6)
    trials_dir = Path(summary.best_config_path).parent / "trials"
    kept = [
        d.name
        for d in trials_dir.glob("trial-*")
        if any(p.is_dir() for p in d.glob("checkpoint_*"))
    ]
    assert len(kept) == 2, kept

    trial_run = mlflow_client.get_run(summary.best.run_id)
    assert trial_run.data.params["strategy.clean"] == "report"
    assert "label_issues/count" in trial_run.data.metrics
    issues = mlflow_client.download_artifacts(trial_run.info.run_id, "label_issues.csv", tmp_path)
    assert Path(issues).read_text().startswith("row,given_label,suggested_label,p_given,")
    assert "does not beat the champion" in summary.reason
    champion = mlflow_client.get_model_version_by_alias("sweep-digits", "champion")
    assert str(champion.version) == first.version
    challenger = mlflow_client.get_model_version_by_alias("sweep-digits", "challenger")
    assert str(challenger.version) == summary.version


def test_resume_after_the_driver_is_killed(ray_session, tmp_path, mlflow_client):
    """SIGKILL the sweep's driver (a job on the session's Ray) once a trial finished; --resume
    completes the same sweep."""
    config = tmp_path / "sweep.yaml"
    config.write_text(
        "name: sweep-resume\n"
        "optim: {epochs: 2, lr: 0.005}\n"
        "scaling: {num_workers: 1, cpus_per_worker: 1}\n"
        "checkpoint: {every_rounds: 1, keep: 1}\n"
        "sweep:\n"
        "  space: {optim.lr: {choice: [0.003, 0.008]}}\n"
        "  num_samples: 2\n"
        "  max_concurrent: 1\n"
        "  scheduler: fifo\n"
    )
    command = [sys.executable, "-m", "orchestrator.cli", "sweep", str(config)]
    env = {**os.environ, "RAY_ADDRESS": ray_session}
    driver, finished_before = start_until_a_trial_finished(
        command, tmp_path, env, mlflow_client, "sweep-resume"
    )
    driver.send_signal(signal.SIGKILL)
    driver.wait()

    resumed = subprocess.run(
        [*command, "--resume"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    experiment = mlflow_client.get_experiment_by_name("sweep-resume")
    parents = mlflow_client.search_runs(
        [experiment.experiment_id], filter_string="tags.`redblue.kind` = 'sweep'"
    )
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    runs = children(mlflow_client, parents[0].info.run_id)
    assert len(runs) == 2 and all(r.info.status == "FINISHED" for r in runs)
    for run in runs:  # trials that had finished were not run again
        if run.info.run_id in finished_before:
            assert run.info.end_time == finished_before[run.info.run_id]
    assert "resuming sweep" in resumed.stderr
