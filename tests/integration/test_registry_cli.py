"""`redblue promote` and `redblue rollback` through the CLI's own app, against a real MLflow
registry (SQLite): the champion gate scores each version on its own run's test split, a version
that does not beat the champion becomes challenger (exit 1), a rollback gives the alias back to
the champion before, and each move is in the registry's tags. And `model.init_from`: a training
(`redblue train` in a process of its own) that starts from a registered version's weights."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pandas as pd
import pytest

pytestmark = pytest.mark.integration

NAME = "promote-cli"


@pytest.fixture(scope="module")
def versions(ray_session, workspace):
    """Three registered versions of random 8-feature MLPs (seeds 1, 2, 3), each logged by a run
    whose config reads the same CSV, labelled by what v2 predicts: v2 scores 1.0 on any split."""
    from orchestrator.config import validate
    from orchestrator.registry import register_version
    from orchestrator.tracking import TrackedRun
    from tests.helpers import sample_rows, saved_model
    from trainers.models import load_model, predict
    from trainers.spec import FINAL_MODEL_DIR

    folders = {
        seed: saved_model(workspace / f"{NAME}-{seed}" / FINAL_MODEL_DIR, seed=seed)
        for seed in (1, 2, 3)
    }
    rows = sample_rows(300, seed=7)
    model, spec = load_model(folders[2])
    labels, _ = predict(model, spec, rows)  # class names
    table = pd.DataFrame(rows, columns=spec.feature_names)
    table["label"] = labels
    assert table["label"].nunique() == 3  # every class present, so the split can stratify
    source = workspace / f"{NAME}.csv"
    table.to_csv(source, index=False)

    cfg = validate({"name": NAME, "data": {"source": str(source), "label": "label"}})
    registered = {}
    for seed, folder in folders.items():
        tracked = TrackedRun.start(cfg, {"redblue.kind": "test"})
        uri = tracked.log_model(folder, sample_rows(2))
        tracked.finish()
        registered[seed] = register_version(uri, NAME, {"seed": str(seed)})
    return registered


def registry(*args: str) -> tuple[int, dict, str]:
    """``redblue promote|rollback ARGS --json`` through the CLI's own Typer app, in this process
    (the store is the session's): (exit code, the JSON result, stderr)."""
    from typer.testing import CliRunner

    from orchestrator.cli import app

    done = CliRunner().invoke(app, [*args, "--json"])
    return done.exit_code, json.loads(done.stdout), done.stderr


def redblue(*args: str, env: dict | None = None) -> tuple[int, dict, str]:
    """``redblue ARGS --json`` as a user runs it, in a process of its own."""
    done = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", *args, "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )
    return done.returncode, json.loads(done.stdout), done.stderr


def test_promote_and_rollback_move_the_champion_through_the_gate(versions, mlflow_client):
    v1, v2, v3 = (versions[seed] for seed in (1, 2, 3))

    code, move, _ = registry("promote", f"models:/{NAME}/{v1}")
    assert code == 0 and move["alias"] == "champion" and move["champion_before"] is None
    assert "there was no champion yet" in move["reason"]

    code, move, _ = registry("promote", f"models:/{NAME}/{v2}")  # scores 1.0: beats v1
    assert code == 0, move
    assert (move["alias"], move["champion_before"], move["champion"]) == ("champion", v1, v2)
    assert "beats the champion" in move["reason"]
    version = mlflow_client.get_model_version(NAME, v2)
    assert version.tags["redblue.champion_before"] == v1
    assert "beats the champion" in version.tags["redblue.decision"]

    code, move, stderr = registry("promote", f"models:/{NAME}@challenger")
    assert code == 2 and "challenger" in move["error"], stderr  # no such alias yet

    code, move, _ = registry("promote", f"models:/{NAME}/{v1}")  # the gate refuses it now
    assert code == 1 and move["alias"] == "challenger" and move["champion"] == v2
    assert "does not beat the champion" in move["reason"]
    assert mlflow_client.get_model_version_by_alias(NAME, "challenger").version == int(v1)

    code, move, _ = registry("promote", f"models:/{NAME}/{v3}", "--alias", "challenger")
    assert code == 0 and move["alias"] == "challenger" and move["champion"] == v2
    assert mlflow_client.get_model_version_by_alias(NAME, "challenger").version == int(v3)

    code, move, _ = registry("rollback", NAME)
    assert code == 0 and (move["champion_before"], move["champion"]) == (v2, v1), move
    assert mlflow_client.get_model_version_by_alias(NAME, "champion").version == int(v1)
    assert (
        mlflow_client.get_model_version(NAME, v2)
        .tags["redblue.rolled_back"]
        .startswith(f"to v{v1} at ")
    )
    assert (
        mlflow_client.get_registered_model(NAME)
        .tags["redblue.last_rollback"]
        .startswith(f"v{v2} -> v{v1} at ")
    )

    code, move, _ = registry("rollback", NAME)  # v1 became champion when there was none
    assert code == 1 and "no earlier champion" in move["error"]
    assert mlflow_client.get_model_version_by_alias(NAME, "champion").version == int(v1)


def test_promote_and_rollback_refuse_what_they_cannot_move(ray_session):
    code, move, _ = registry("promote", "runs:/0123456789abcdef0123456789abcdef/model")
    assert code == 2 and "registered version" in move["error"]
    code, move, _ = registry("rollback", "no-such-model")
    assert code == 2 and "no-such-model" in move["error"]


def test_a_run_started_from_a_version_begins_with_its_weights(
    versions, ray_session, workspace, mlflow_client
):
    """`model.init_from`: with a learning rate too small to move them, a run started from v2
    predicts as v2 does, so it gets every one of v2's own labels right from its first round (a
    random start gets about a third). A model it cannot start from: exit 2 before Ray, named."""
    import yaml

    config = workspace / f"{NAME}-warm.yaml"
    settings = {
        "name": f"{NAME}-warm",
        "data": {"source": str(workspace / f"{NAME}.csv"), "label": "label"},
        "model": {"kind": "mlp", "hidden": [16], "init_from": f"models:/{NAME}/{versions[2]}"},
        "optim": {"epochs": 1, "lr": 1e-9, "batch_size": 32},
        "run": {"storage_path": str(workspace / "ray_results")},
    }
    config.write_text(yaml.safe_dump(settings))
    code, summary, stderr = redblue("train", str(config), env={"RAY_ADDRESS": ray_session})
    assert code == 0, stderr[-3000:]
    assert summary["metrics"]["test_accuracy"] == 1.0
    run = mlflow_client.get_run(summary["run_id"])
    assert run.data.params["model.init_from"] == f"models:/{NAME}/{versions[2]}"
    first = mlflow_client.get_metric_history(summary["run_id"], "val_accuracy")
    assert min(m.step for m in first) == 1 and first[0].value == 1.0

    v2 = f"model.init_from=models:/{NAME}/{versions[2]}"
    for changes, named in (
        (["model.hidden=[32]"], "its architecture differs"),
        (["model.kind=linear", v2], "it is a mlp model and this config trains a linear"),
        ([f"model.init_from=models:/{NAME}/99"], f"models:/{NAME}/99"),
    ):
        sets = [part for change in changes for part in ("--set", change)]
        code, refused, stderr = redblue("train", str(config), *sets)
        assert code == 2 and named in refused["error"], (changes, refused)
        assert "training on" not in stderr  # refused before Ray started
