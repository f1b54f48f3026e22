"""The named strategies ``redblue compare --strategies`` takes, and the config values each sets.

A name sets two config keys (``strategy.kind`` and ``strategy.clean``), so the comparison's grid
is over the pseudo key :data:`STRATEGY_KEY`, whose values the sweep machinery turns into those
config values (``presets`` in :mod:`orchestrator.sweeps.config`). ``standard`` is the baseline:
every other strategy is paired with it by seed.
"""

from __future__ import annotations

from typing import Any

from orchestrator.compare.stats import BASELINE, STRATEGIES
from orchestrator.config import ConfigError

STRATEGY_KEY = "strategy"  # the grid's pseudo key; also the children's tag redblue.strategy
DEFAULT = ",".join(STRATEGIES)
NAMED: dict[str, dict[str, Any]] = {
    "standard": {"strategy.kind": "standard", "strategy.clean": "off"},
    "red_blue": {"strategy.kind": "red_blue", "strategy.clean": "off"},
    "red_blue_prune": {"strategy.kind": "red_blue", "strategy.clean": "prune"},
    "red_blue_weight": {"strategy.kind": "red_blue", "strategy.clean": "weight"},
    "red_blue_report": {"strategy.kind": "red_blue", "strategy.clean": "report"},
}
ALIASES = {"red_blue_clean": "red_blue_prune"}


def parse_strategies(text: str) -> tuple[list[str], bool]:
    """(the named strategies of a comma list, aliases resolved and repeats dropped, in order;
    whether ``standard`` was added because it was missing). A ConfigError names the unknown
    values and the valid ones."""
    given = [part.strip() for part in text.split(",") if part.strip()]
    valid = ", ".join([*NAMED, *(f"{alias} (= {name})" for alias, name in ALIASES.items())])
    unknown = [name for name in given if name not in NAMED and name not in ALIASES]
    if unknown:
        bad = ", ".join(repr(name) for name in unknown)
        raise ConfigError(f"--strategies: unknown strategy {bad}; valid: {valid}")
    names = list(dict.fromkeys(ALIASES.get(name, name) for name in given))
    if not [name for name in names if name != BASELINE]:
        raise ConfigError(
            f"--strategies {text!r}: name a strategy to compare with {BASELINE}; valid: {valid}"
        )
    added = BASELINE not in names
    if added:
        names.append(BASELINE)
    return names, added


def presets() -> dict[str, dict[str, dict[str, Any]]]:
    """The grid's pseudo key and the config values each of its values stands for."""
    return {STRATEGY_KEY: NAMED}
