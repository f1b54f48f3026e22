"""A GAN end to end on the shared local Ray: Ray Train workers with two DeepSpeed engines per
replica, the run in MLflow (both losses per round, test_fd against its floor, the quality report,
generated rows, a pyfunc that generates), and population-based training of a GAN's two rates
(the sweeps' PBT mechanics: exploits, perturbed optimizers, kept checkpoints), registering a
champion by test_fd."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import mlflow
import pandas as pd
import pytest

from tests.helpers import children

pytestmark = pytest.mark.integration

PENGUINS = {
    "data": {"source": "penguins", "label": "species"},
    "model": {"kind": "gan"},
    "optim": {"epochs": 30, "batch_size": 32},
    "strategy": {"eval_every": 5},
    "scaling": {"num_workers": 1, "cpus_per_worker": 1},
}


@pytest.fixture(scope="module")
def trained(train):
    return train("gan-penguins", **PENGUINS)


def test_a_gan_trains_on_ray_and_its_run_generates_rows(trained, mlflow_client):
    code, summary = trained
    assert code == 0 and summary is not None
    run = mlflow_client.get_run(summary.run_id)
    metrics = run.data.metrics
    assert metrics["test_fd"] < 10 * metrics["test_fd_real"]  # the floor: real against real
    assert 0 < metrics["test_quality"] <= 1 and metrics["test_label_accuracy"] > 0.4
    for loss in ("red/train_loss", "red/d_loss", "blue/train_loss", "blue/d_loss"):
        assert len(mlflow_client.get_metric_history(summary.run_id, loss)) > 5, loss
    artifacts = {a.path for a in mlflow_client.list_artifacts(summary.run_id)}
    assert {"generated_rows.csv", "quality.json", "preprocessing.json"} <= artifacts
    drawn = [a.path for a in mlflow_client.list_artifacts(summary.run_id, "samples")]
    assert len(drawn) >= 2 and all(path.endswith(".csv") for path in drawn)  # each evaluation
    model = mlflow.pyfunc.load_model(summary.model_uri)
    asked = pd.DataFrame({"n": [2, 1], "label": ["Gentoo", "Adelie"], "seed": [4, 4]})
    rows = model.predict(asked)
    assert rows["species"].tolist() == ["Gentoo", "Gentoo", "Adelie"]
    assert {"island", "bill_length_mm", "sex"} <= set(rows.columns)
    pd.testing.assert_frame_equal(rows, model.predict(asked))  # the same seed, the same rows


def test_served_rows_do_not_depend_on_the_requests_batched_with_them(
    trained, serve_port, workspace
):
    """On Serve, concurrent requests (with batching on, which a generative model's requests
    skip) each get, to the last bit, the rows they get alone. Without a key: 401; a bad label:
    422."""
    from concurrent.futures import ThreadPoolExecutor

    from ray import serve

    from orchestrator.serving.application import DeployArgs
    from orchestrator.serving.model_source import parse_model_uri, resolve_bundle
    from orchestrator.serving.rollout import start
    from serve_apps.guard import key_digest
    from serve_apps.settings import ServeSection

    key = "gan-Zq8Lw3Nv5Rb7Tx2Ky4Hm"
    settings = ServeSection(
        port=serve_port, num_replicas=1, cpus_per_replica=0.25, max_rows=20,
        batch_wait_timeout_s=0.2,
    )  # fmt: skip
    _, summary = trained
    args = DeployArgs(
        model=summary.model_uri,
        name="gan-serve",
        serve=settings,
        key_digests=[key_digest(key)],
        audit_log=str(workspace / "gan-audit.jsonl"),
    )
    deployment = start(args, resolve_bundle(parse_model_uri(summary.model_uri)), None)
    try:
        auth = {"Authorization": f"Bearer {key}"}
        bodies = [{"n": 1 + i % 3, "labels": [species], "seed": i}
                  for i, species in enumerate(["Adelie", "Gentoo", "Chinstrap"] * 3)]  # fmt: skip

        def ask(body):
            answer = httpx.post(f"{deployment.url}/v1/generate", json=body, headers=auth)
            assert answer.status_code == 200, answer.text
            return answer.json()["rows"]

        alone = [ask(body) for body in bodies]
        with ThreadPoolExecutor(len(bodies)) as pool:
            together = list(pool.map(ask, bodies))
        assert together == alone
        assert httpx.post(f"{deployment.url}/v1/generate", json=bodies[0]).status_code == 401
        bad = httpx.post(f"{deployment.url}/v1/generate", json={"n": 1, "labels": ["Emperor"]},
                         headers=auth)  # fmt: skip
        assert bad.status_code == 422 and "Emperor" in bad.json()["message"]
    finally:
        serve.delete("gan-serve")


def test_pbt_hands_a_trial_the_others_checkpoint_and_both_perturbed_rates(sweep, mlflow_client):
    """Population-based training of the generator's and the discriminator's learning rates (as
    Ray's PBT DCGAN does): a trial continues from the other's checkpoint (it does not start
    again) with perturbed rates, and each DeepSpeed optimizer trains with its new rate, not the
    one restored from the checkpoint. The best trial's model is registered as the champion,
    ranked by test_fd, and only its checkpoints are kept."""
    space = {"optim.lr": {"loguniform": [5e-5, 3e-4]}, "model.d_lr": {"loguniform": [2e-4, 1e-3]}}
    code, summary = sweep(
        "gan-pbt",
        **{
            **PENGUINS,
            # A constant schedule: the optimizer's lr is then the trial's config's.
            "optim": {"epochs": 8, "batch_size": 32, "schedule": "constant", "warmup_steps": 0},
            "strategy": {"eval_every": 1},
            "scaling": {"num_workers": 1, "cpus_per_worker": 0.5},  # two trials on two cores
        },
        # A checkpoint, so a chance to exploit, every round: on two loaded cores the trials'
        # starts are seconds apart, and their overlap is short.
        checkpoint={"every_rounds": 1, "keep": 1},
        sweep={"space": space, "num_samples": 2, "max_concurrent": 2, "scheduler": "pbt"},
    )
    assert code == 0 and summary is not None and summary.alias == "champion"
    champion = mlflow_client.get_model_version_by_alias("gan-pbt", "champion")
    assert str(champion.version) == summary.version
    trials = children(mlflow_client, summary.parent_run_id)
    assert len(trials) == 2 and all(t.info.status == "FINISHED" for t in trials)
    assert all("test_fd" in t.data.metrics for t in trials)
    assert all("data.dropped_rows" in t.data.params for t in trials)  # each start reports it
    exploited = [t for t in trials if "redblue.pbt.exploits" in t.data.tags]
    assert exploited, [t.data.tags for t in trials]
    for trial in exploited:  # the discriminator's rate, perturbed by the exploit
        history = mlflow_client.get_metric_history(trial.info.run_id, "pbt/model.d_lr")
        started = min(history, key=lambda metric: metric.step).value
        last_exploit = trial.data.tags["redblue.pbt.last_exploit"]
        assert "from trial" in last_exploit
        found = re.search(r"\bd_lr=([0-9.e+-]+)", last_exploit)
        assert found, last_exploit
        # An exploit at the last round leaves no round to log the new rate on: the tag says it.
        continued = float(found.group(1))
        assert abs(continued - started) > 1e-3 * started, (last_exploit, started)

    def history(run, key: str) -> dict[int, float]:
        return {m.step: m.value for m in mlflow_client.get_metric_history(run.info.run_id, key)}

    # Both trials may exploit: one mid-run, and one (later) the other's final checkpoint, which
    # leaves it nothing to train. The one that trained on must have trained with two rates.
    run = max(exploited, key=lambda t: len(set(history(t, "pbt/optim.lr").values())))
    rates = history(run, "pbt/optim.lr")
    assert len(set(rates.values())) >= 2  # it trained with more than one lr
    reported = history(run, "lr")  # the generator's optimizer
    for step, value in rates.items():
        assert reported[step] == pytest.approx(value, rel=1e-5), (step, rates, reported)
    rounds = [m.step for m in mlflow_client.get_metric_history(run.info.run_id, "val_loss")]
    assert rounds.count(1) == 1  # it continued from a checkpoint, it did not start again
    # Tune's copies and the Train runs' checkpoints: only the best trial's remain.
    sweep_dir = Path(summary.best_config_path).parent
    holders = {p.parent.name for p in sweep_dir.glob("**/checkpoint_0*") if p.is_dir()}
    assert holders and all(
        f"_{summary.best.trial_id}_" in h or h.startswith(f"trial-{summary.best.trial_id}")
        for h in holders
    ), holders
