"""The model-family seam: the registry, the ``model`` section chosen by kind, and the linear
family trained by the real loop on plain PyTorch engines (one process, no Ray)."""

from __future__ import annotations

import json
import typing

import numpy as np
import pytest
import torch

from orchestrator.config import ConfigError, load_config, validate
from tests.helpers import plain_trainer, saved_model
from trainers.families import FAMILIES, family_of
from trainers.loop.trainer import Trainer
from trainers.models import CONFIG_FILE, load_model, save_model
from trainers.tasks import input_schema, task_for


def train(**sections) -> tuple[Trainer, dict[str, float]]:
    trainer = plain_trainer(lambda metrics, checkpoint: None, **sections)
    return trainer, trainer.run().metrics


def test_every_family_declares_its_kind_in_its_config_section():
    for kind, family in FAMILIES.items():
        assert kind in typing.get_args(family.config.model_fields["kind"].annotation)
        assert family.config(kind=kind).kind == kind  # every other key has a default
    with pytest.raises(
        ValueError, match=r"unknown model kind 'transformer'; known: \['gan', 'gru', 'linear'"
    ):
        family_of("transformer")


def test_the_model_section_is_the_family_chosen_by_kind():
    assert validate({}).model.kind == "mlp"
    cfg = validate({"model": {"kind": "linear", "l1": 0.01}})
    assert cfg.model.kind == "linear" and cfg.model.l1 == 0.01
    with pytest.raises(ConfigError, match=r"model.hidden: unknown key; known keys here: kind, l1"):
        validate({"model": {"kind": "linear", "hidden": [8]}})
    with pytest.raises(ConfigError, match=r"model.kind: 'transformer' is not a model family"):
        validate({"model": {"kind": "transformer"}})
    with pytest.raises(ConfigError, match=r"model.l2: Input should be greater than or equal to 0"):
        validate({"model": {"kind": "linear", "l2": -1}})


def test_setting_another_kind_starts_that_familys_section_from_its_defaults(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model:\n  kind: mlp\n  hidden: [8]\n  dropout: 0.1\n")
    cfg = load_config(path, ["model.kind=linear", "model.l2=0.5"])
    assert cfg.model.model_dump() == {"kind": "linear", "l1": 0.0, "l2": 0.5, "init_from": None}
    assert load_config(path, ["model.kind=mlp"]).model.model_dump()["hidden"] == [8]


def test_logistic_regression_learns_digits_with_both_strategies():
    for strategy in ("red_blue", "standard"):
        _, metrics = train(
            model={"kind": "linear"}, optim={"epochs": 8, "lr": 0.01}, strategy={"kind": strategy}
        )
        assert metrics["test_accuracy"] >= 0.9, strategy


def test_linear_regression_reaches_the_least_squares_fit():
    """On diabetes (10 features) the trained model's test MSE is within 5% of scikit-learn's
    ordinary least squares fitted on the same training pool."""
    from sklearn.linear_model import LinearRegression

    trainer, metrics = train(
        data={"source": "diabetes"},
        model={"kind": "linear"},
        strategy={"kind": "standard"},
        optim={"epochs": 300, "lr": 0.02, "batch_size": 32, "schedule": "cosine"},
    )
    features = trainer.features.numpy()
    labels = trainer.labels.numpy()
    train_pool, test = trainer.split.train, trainer.split.test
    ols = LinearRegression().fit(features[train_pool], labels[train_pool])
    ols_mse = float(np.mean((ols.predict(features[test]) - labels[test]) ** 2))
    assert metrics["test_mse"] == pytest.approx(ols_mse, rel=0.05)


def test_l2_and_l1_penalties_shrink_the_weights():
    common = {"optim": {"epochs": 4, "lr": 0.01}, "strategy": {"kind": "standard"}}

    def weights(**penalty) -> torch.Tensor:
        trainer, _ = train(model={"kind": "linear", **penalty}, **common)
        return trainer.replicas["standard"]["model"].module.get_submodule("net.0").weight.detach()

    plain, ridge, lasso = weights(), weights(l2=0.05), weights(l1=0.01)
    assert ridge.norm() < 0.7 * plain.norm()
    assert lasso.abs().sum() < 0.7 * plain.abs().sum()
    assert (lasso.abs() < 1e-3).float().mean() > (plain.abs() < 1e-3).float().mean()


def test_a_model_config_written_before_families_loads(tmp_path):
    """model_config.json files from before the seam held the MLP's fields at the top level."""
    directory = saved_model(tmp_path / "m", seed=1)
    config = json.loads((directory / CONFIG_FILE).read_text())
    options = config.pop("options")
    config.update({k: v for k, v in options.items() if k != "kind"})
    (directory / CONFIG_FILE).write_text(json.dumps(config))
    model, spec = load_model(directory)
    assert spec.options == {"kind": "mlp", "hidden": [16]}
    again = save_model(tmp_path / "again", model, spec)
    assert load_model(again)[1] == spec


def test_each_table_family_gives_an_example_its_input_schema_accepts(tmp_path):
    for kind in (
        k for k, family in FAMILIES.items() if "table" in family.data_kinds and not family.task
    ):
        model, spec = load_model(saved_model(tmp_path / kind, seed=2, kind=kind))
        family = family_of(kind)
        rows = input_schema(spec).rows(task_for(spec).example_input(spec, 3))
        assert rows.shape == (3, spec.in_features)
        labels, probabilities = family.predict(model, spec, rows)
        assert len(labels) == 3 and probabilities is not None
