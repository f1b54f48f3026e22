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
    from trainers.engine.checkpoint import FINAL_MODEL_DIR

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
