"""`redblue compare --strategies`: the names, their aliases, standard as the baseline, and the
config values each name gives a trial of the grid."""

from __future__ import annotations

import pytest

from orchestrator.compare.run import compare_config
from orchestrator.compare.strategies import DEFAULT, NAMED, parse_strategies, presets
from orchestrator.config import ConfigError, validate
from orchestrator.sweeps.config import config_values
from orchestrator.sweeps.run import max_rounds
from trainers.loop.plan import rounds_of


def test_the_default_is_red_blue_against_standard():
    assert parse_strategies(DEFAULT) == (["red_blue", "standard"], False)


def test_names_aliases_and_repeats():
    names, added = parse_strategies(" standard, red_blue ,red_blue_clean,red_blue_prune,")
    assert names == ["standard", "red_blue", "red_blue_prune"] and not added
    assert parse_strategies("red_blue_weight,red_blue_report,standard")[0] == [
        "red_blue_weight",
        "red_blue_report",
        "standard",
    ]


def test_standard_is_added_when_missing():
    assert parse_strategies("red_blue_prune") == (["red_blue_prune", "standard"], True)


def test_an_unknown_name_is_refused_with_the_valid_ones():
    with pytest.raises(ConfigError) as error:
        parse_strategies("red_blue,blue,standrad")
    message = str(error.value)
    assert message.startswith("--strategies: unknown strategy 'blue', 'standrad'; valid: ")
    for name in (*NAMED, "red_blue_clean (= red_blue_prune)"):
        assert name in message
    for nothing_to_compare in ("standard", "", " , "):
        with pytest.raises(ConfigError, match="name a strategy to compare with standard"):
            parse_strategies(nothing_to_compare)


@pytest.mark.parametrize(
    ("name", "kind", "clean"),
    [
        ("standard", "standard", "off"),
        ("red_blue", "red_blue", "off"),
        ("red_blue_prune", "red_blue", "prune"),
        ("red_blue_weight", "red_blue", "weight"),
        ("red_blue_report", "red_blue", "report"),
    ],
)
def test_a_name_sets_the_strategy_kind_and_clean_of_its_trial(name, kind, clean):
    base = validate({"strategy": {"kind": "red_blue", "clean": "prune"}})
    trial = base.with_values(config_values({"strategy": name, "seed": 3}, presets()))
    assert (trial.strategy.kind, trial.strategy.clean, trial.seed) == (kind, clean, 3)


def test_the_grid_plans_the_rounds_of_its_named_strategies():
    cfg = compare_config(validate({"optim": {"epochs": 3}}), 2, ["red_blue_prune", "standard"])
    expected = rounds_of(cfg.with_values({"seed": 1}), 1000).num_rounds
    assert expected > 1
    assert max_rounds(cfg, 1000, presets()) == expected
