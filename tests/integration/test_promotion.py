"""Safe promotion against a real MLflow registry (SQLite): the alias is set only where the
decision read it, two promoters racing give one champion, a champion with other inputs is not
replaced unless allowed, and `deploy --reload` never rolls to a model with other inputs."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
import pytest

from orchestrator.registry import CHAMPION, Decision, PromotionError, promote
from orchestrator.registry_lock import LOCK_TAG, Lock, format_lock

pytestmark = pytest.mark.integration

FAST = {"settle_s": 0.3}


@pytest.fixture(scope="module")
def register(ray_session, workspace):
    """``register(name, seed, features=8) -> (version, final_model dir)``."""
    from orchestrator.config import validate
    from orchestrator.registry import register_version
    from orchestrator.tracking import TrackedRun
    from tests.helpers import sample_rows, saved_model
    from trainers.spec import FINAL_MODEL_DIR

    def register_one(name: str, seed: int, features: int = 8) -> tuple[str, Path]:
        tracked = TrackedRun.start(validate({"name": name}), {"redblue.kind": "test"})
        directory = saved_model(
            workspace / f"{name}-{seed}-{features}" / FINAL_MODEL_DIR, seed=seed, features=features
        )
        tracked.log_metrics({"test_accuracy": 0.5})
        model_uri = tracked.log_model(directory, sample_rows(2, features))
        tracked.finish()
        return register_version(model_uri, name, {"seed": str(seed)}), directory

    return register_one


@pytest.fixture(scope="module")
def client(ray_session):
    from mlflow.tracking import MlflowClient

    return MlflowClient(os.environ["MLFLOW_TRACKING_URI"])


def champion_of(client, name: str) -> str:
    return str(client.get_model_version_by_alias(name, CHAMPION).version)


def test_the_alias_is_set_only_where_the_decision_read_it(register, client):
    """Another sweep promotes while this one decides: the decision is made again against the
    new champion, and this version does not take the alias from it."""
    (first, _), (mine, _), (theirs, _) = (register("moved", seed) for seed in (1, 2, 3))
    client.set_registered_model_alias("moved", CHAMPION, first)
    shown: list[str | None] = []

    def judge(champion: str | None) -> Decision:
        shown.append(champion)
        if len(shown) == 1:  # meanwhile another sweep makes its version champion
            client.set_registered_model_alias("moved", CHAMPION, theirs)
        return Decision(champion == first, f"judged against v{champion}")

    promotion = promote(client, "moved", mine, judge, **FAST)
    assert shown == [first, theirs]
    assert promotion.alias == "challenger" and promotion.champion_before == theirs
    assert champion_of(client, "moved") == theirs
    assert str(client.get_model_version_by_alias("moved", "challenger").version) == mine
    assert LOCK_TAG not in client.get_registered_model("moved").tags  # released


def test_two_racing_promotions_make_one_champion(register, client):
    (first, _), (a, _), (b, _) = (register("race", seed) for seed in (1, 2, 3))
    client.set_registered_model_alias("race", CHAMPION, first)
    both_decided = threading.Barrier(2)
    outcomes: dict[str, object] = {}

    def sweep(version: str) -> None:
        from mlflow.tracking import MlflowClient

        own = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])

        def judge(champion: str | None) -> Decision:
            if champion == first:  # both read v1 before either sets anything
                both_decided.wait(timeout=30)
            return Decision(champion == first, f"beats v{champion}: {champion == first}")

        try:
            outcomes[version] = promote(own, "race", version, judge, **FAST)
        except Exception as exc:  # reported by the assertions below
            outcomes[version] = exc

    threads = [threading.Thread(target=sweep, args=(v,)) for v in (a, b)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    aliases = sorted(getattr(outcomes[v], "alias", repr(outcomes[v])) for v in (a, b))
    assert aliases == ["challenger", "champion"], outcomes
    winner = next(v for v in (a, b) if outcomes[v].alias == CHAMPION)  # type: ignore[union-attr]
    loser = b if winner == a else a
    assert champion_of(client, "race") == winner
    assert outcomes[loser].champion_before == winner  # type: ignore[union-attr]


def test_a_held_lock_is_waited_for_and_an_expired_one_taken_over(register, client):
    import time

    (first, _), (second, _) = register("locked", 1), register("locked", 2)
    client.set_registered_model_alias("locked", CHAMPION, first)
    held = Lock("another-sweep", expires=time.time() + 60)
    client.set_registered_model_tag("locked", LOCK_TAG, format_lock(held))
    promote_anyway = lambda _: Decision(True, "better")  # noqa: E731
    with pytest.raises(PromotionError, match="held its lock"):
        promote(client, "locked", second, promote_anyway, wait_s=1.5, **FAST)
    assert champion_of(client, "locked") == first
    expired = Lock("a-crashed-sweep", expires=time.time() - 1)
    client.set_registered_model_tag("locked", LOCK_TAG, format_lock(expired))
    assert promote(client, "locked", second, promote_anyway, **FAST).alias == CHAMPION
    assert champion_of(client, "locked") == second


def dataset_of(features: int):
    from tests.helpers import sample_rows
    from trainers.dataset import Dataset, Split

    rows = sample_rows(40, features)
    labels = np.arange(40) % 3
    names = [f"f{i}" for i in range(features)]
    data = Dataset(rows, labels, "classification", names, ["a", "b", "c"])
    indices = np.arange(40)
    return data, Split(test=indices[:20], val=indices[20:25], red=indices[25:30], blue=indices[30:])


def test_a_champion_with_other_inputs_is_kept_unless_allowed(register, client):
    from orchestrator.registry import promote_version

    (first, _), (narrow, narrow_dir) = register("schema", 1), register("schema", 2, features=5)
    client.set_registered_model_alias("schema", CHAMPION, first)
    data, split = dataset_of(5)
    kept, _ = promote_version(client, "schema", narrow, narrow_dir, data, split)
    assert kept.alias == "challenger" and "8 features -> 5" in kept.decision.reason
    assert champion_of(client, "schema") == first
    allowed, score = promote_version(
        client, "schema", narrow, narrow_dir, data, split, allow_schema_change=True
    )
    assert allowed.alias == CHAMPION and "--allow-schema-change" in allowed.decision.reason
    assert champion_of(client, "schema") == narrow and score.metric == "test_accuracy"
    version = client.get_model_version("schema", narrow)
    assert version.tags["redblue.champion_before"] == first


def test_reload_does_not_roll_to_a_model_with_other_inputs(register, client, capsys):
    from orchestrator.serving.application import DeployArgs
    from orchestrator.serving.model_source import parse_model_uri, resolve_bundle
    from orchestrator.serving.rollout import _roll_if_moved
    from serve_apps.settings import ServeSection

    (served, _), (narrow, _) = register("reloadschema", 1), register("reloadschema", 2, 5)
    client.set_registered_model_alias("reloadschema", CHAMPION, served)
    uri = parse_model_uri("models:/reloadschema@champion")
    current = resolve_bundle(uri)
    args = DeployArgs(
        model=uri.text, name="reloadschema", serve=ServeSection(), key_digests=["0" * 64]
    )
    client.set_registered_model_alias("reloadschema", CHAMPION, narrow)
    refused: set[str] = set()
    for _ in range(2):  # checked again each interval, said once
        assert _roll_if_moved(args, uri, current, refused) is current
    assert refused == {narrow}
    said = capsys.readouterr()
    text = said.out + said.err
    assert text.count(f"moved to v{narrow}, whose inputs differ") == 1, text
    assert "8 features -> 5" in text


def test_reload_does_not_roll_to_a_model_over_serve_max_parameters(register, client, capsys):
    """--reload checks serve.max_parameters on each new version before anything builds it: a
    version over the limit is not rolled, and the served one stays."""
    from orchestrator.serving.application import DeployArgs
    from orchestrator.serving.model_source import parse_model_uri, resolve_bundle
    from orchestrator.serving.rollout import _roll_if_moved
    from serve_apps.settings import ServeSection

    (served, _), (bigger, _) = register("reloadsize", 1), register("reloadsize", 2)
    client.set_registered_model_alias("reloadsize", CHAMPION, served)
    uri = parse_model_uri("models:/reloadsize@champion")
    current = resolve_bundle(uri)  # deployed before the limit was lowered
    limit = ServeSection(max_parameters=100)
    args = DeployArgs(model=uri.text, name="reloadsize", serve=limit, key_digests=["0" * 64])
    client.set_registered_model_alias("reloadsize", CHAMPION, bigger)
    assert _roll_if_moved(args, uri, current) is current
    said = capsys.readouterr()
    text = " ".join((said.out + said.err).split())
    assert f"v{bigger} not rolled" in text and "over serve.max_parameters (100)" in text, text
    assert f"still serving {current.label}" in text


def test_deploy_reload_follows_the_alias_on_an_autoscaling_deployment(
    ray_session, register, client, serve_port, tmp_path
):
    """`redblue deploy --reload` with `serve.autoscaling`: serves the alias's version on 1-2
    replicas, rolls to the version the alias moves to, and Ctrl-C removes the deployment."""
    import signal
    import subprocess
    import sys
    import time

    import httpx
    from ray import serve

    (first, _), (second, _) = register("reloaded", 1), register("reloaded", 2)
    client.set_registered_model_alias("reloaded", CHAMPION, first)
    key = "itest-Rl7Kq2Mv9Xw4Bn6Tz3Hs"
    overrides = {
        "serve.port": str(serve_port),
        "serve.route_prefix": "/reloaded",
        "serve.reload_interval_s": "1",
        "serve.cpus_per_replica": "0.25",
        "serve.autoscaling": "{min_replicas: 1, max_replicas: 2}",
    }
    command = [sys.executable, "-m", "orchestrator.cli", "deploy", "models:/reloaded@champion"]
    command += ["--reload"] + [a for k, v in overrides.items() for a in ("--set", f"{k}={v}")]
    env = {**os.environ, "RAY_ADDRESS": ray_session, "REDBLUE_API_KEY": key}
    deploying = subprocess.Popen(
        command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )

    def served_version() -> str | None:
        try:
            answer = httpx.get(
                f"http://127.0.0.1:{serve_port}/reloaded/v1/model",
                headers={"Authorization": f"Bearer {key}"},
                timeout=5,
            )
        except httpx.TransportError:
            return None
        return answer.json()["model"]["version"] if answer.status_code == 200 else None

    def until_served(version: str) -> None:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and deploying.poll() is None:
            if served_version() == version:
                return
            time.sleep(1)
        raise AssertionError(f"v{version} not served; deploy ended {deploying.poll()}")

    try:
        until_served(first)
        deployments = serve.status().applications["reloaded"].deployments.values()
        assert all(d.status == "HEALTHY" for d in deployments)
        client.set_registered_model_alias("reloaded", CHAMPION, second)
        until_served(second)
    finally:
        deploying.send_signal(signal.SIGINT)  # Ctrl-C
        out, err = deploying.communicate(timeout=120)
    assert deploying.returncode == 0, err[-3000:]
    assert "autoscaling 1-2" in out and "watching models:/reloaded@champion" in err
    assert "reloaded" not in serve.status().applications
