"""A new registered version through the champion gate: registered, scored against the champion
on a test split and given ``@champion`` or ``@challenger`` (:mod:`orchestrator.registry`); what
``train --register``, a sweep's end and ``export --register`` share."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from orchestrator import console

if TYPE_CHECKING:  # the registry loads torch
    from orchestrator.registry import Score
    from trainers.dataset import Dataset, Split


@dataclass
class Registered:
    """A new registered version and the alias the gate gave it (None: the promotion could not
    be made safely; ``reason`` says why)."""

    version: str
    alias: str | None
    reason: str
    score: Score | None

    def fields(self) -> dict[str, str | float | None]:
        """For ``--json``: version, alias, reason, and the score's metric and value."""
        score = self.score
        return {
            "version": self.version,
            "alias": self.alias,
            "reason": self.reason,
            "metric": score.metric if score else None,
            "value": score.value if score else None,
        }

    def line(self, name: str) -> str:
        alias = f"@{self.alias}" if self.alias else "(no alias)"
        scored = f" ({self.score.metric} {self.score.value:.4f})" if self.score else ""
        return f"{name} v{self.version} {alias}: {self.reason}{scored}"


def register_and_promote(
    client,
    model_uri: str,
    name: str,
    tags: dict[str, str],
    model_dir: Path,
    dataset: Dataset,
    split: Split,
    *,
    allow_schema_change: bool = False,
) -> Registered:
    """Register ``model_uri`` as a new version of ``name`` and give it the alias the champion
    gate decides on ``split``'s test part (:func:`orchestrator.registry.promote_version`)."""
    from orchestrator.registry import DECISION_TAG, promote_version, register_version
    from orchestrator.registry_lock import PromotionError

    version = register_version(model_uri, name, tags)
    try:
        promotion, score = promote_version(
            client, name, version, model_dir, dataset, split,
            allow_schema_change=allow_schema_change,
        )  # fmt: skip
    except PromotionError as exc:
        console.print_error(str(exc))
        client.set_model_version_tag(name, version, DECISION_TAG, str(exc))
        return Registered(version, None, str(exc), None)
    return Registered(version, promotion.alias, promotion.decision.reason, score)
