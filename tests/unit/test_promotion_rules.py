"""Safe promotion, the pure parts: the input-schema rule and the registry lock's states."""

from __future__ import annotations

from orchestrator.registry import FeatureSchema, Score, decide, schema_changes
from orchestrator.registry_lock import Lock, format_lock, lock_state, parse_lock

CONFIG = {
    "kind": "mlp",
    "in_features": 4,
    "out_features": 3,
    "hidden": [16],
    "activation": "relu",
    "dropout": 0.0,
    "task": "classification",
    "feature_names": ["a", "b", "c", "d"],
    "classes": ["x", "y", "z"],
}


def schema(**changed) -> FeatureSchema:
    return FeatureSchema.from_model_config({**CONFIG, **changed})


def test_same_inputs_are_no_change_whatever_the_architecture():
    wider = schema(hidden=[256, 128], dropout=0.3, activation="gelu")
    assert schema_changes(schema(), wider) == []


def test_every_kind_of_input_change_is_named():
    assert schema_changes(schema(), schema(in_features=5, feature_names=list("abcde"))) == [
        "4 features -> 5",
        "feature names differ in count",
    ]
    assert schema_changes(schema(), schema(feature_names=["a", "b", "q", "d"])) == [
        "feature 2 is named 'q', was 'c'"
    ]
    assert schema_changes(schema(), schema(classes=["x", "y"])) == [
        "classes ['x', 'y', 'z'] -> ['x', 'y']"
    ]
    typed = {"columns": [{"name": n, "type": "number"} for n in "abcd"]}
    typed["columns"][1]["type"] = "category"
    assert schema_changes(schema(), schema(preprocessing=typed)) == [
        "column 'b' is a category, was a number"
    ]
    regression = schema(task="regression", classes=[])
    assert schema_changes(schema(), regression)[0] == "task classification -> regression"


def test_a_better_model_with_other_inputs_is_not_promoted_unless_allowed():
    better, champion = Score("test_accuracy", 0.99, True), Score("test_accuracy", 0.5, True)
    changes = schema_changes(schema(), schema(in_features=5, feature_names=list("abcde")))
    kept = decide(better, None, changes=changes, has_champion=True)
    assert not kept.promote
    assert "input schema differs" in kept.reason and "--allow-schema-change" in kept.reason
    allowed = decide(better, None, changes=changes, allow_schema_change=True, has_champion=True)
    assert allowed.promote and "--allow-schema-change" in allowed.reason
    # With the same inputs the scores decide, as before.
    assert decide(better, champion, changes=[]).promote
    assert not decide(champion, better, changes=[]).promote


def test_no_champion_means_promotion_and_an_unscorable_one_is_told_apart():
    score = Score("test_mse", 1.0, False)
    assert decide(score, None).reason == "there was no champion yet"
    unscored = decide(score, None, has_champion=True)
    assert unscored.promote and "cannot be scored" in unscored.reason


def test_lock_states():
    lock = Lock("host:1:abc", expires=100.0)
    value = format_lock(lock)
    assert parse_lock(value) == lock
    assert lock_state(value, "host:1:abc", now=50.0) == "mine"
    assert lock_state(value, "other", now=50.0) == "held"
    assert lock_state(value, "other", now=100.0) == "free"  # expired: a crashed holder's
    assert lock_state(None, "other", now=0.0) == "free"
    assert lock_state("not json", "other", now=0.0) == "free"
    assert parse_lock('{"owner": "x"}') is None


def test_sweep_takes_the_allow_schema_change_flag():
    import typer

    from orchestrator.cli import app

    sweep = typer.main.get_command(app).commands["sweep"]  # type: ignore[attr-defined]
    flags = {flag for param in sweep.params for flag in param.opts}
    assert "--allow-schema-change" in flags
