"""The registry's champion: register the best trial's model, and promote it only if it wins.

A new version takes the alias ``champion`` only if it beats the current champion on the same test
split (both are scored here, by the same code, on the split of this sweep) and takes the same
inputs (feature names, width, task and classes, from each model's ``model_config.json``; a
different schema is promoted only with ``--allow-schema-change``); otherwise it becomes
``challenger``. :func:`decide` is the whole rule, kept pure for unit tests.

MLflow's registry has no compare-and-set, so :func:`promote` builds the nearest honest thing: an
advisory lock held in a tag of the registered model (``redblue.promotion_lock``: owner and expiry),
taken by writing the tag, waiting :data:`LOCK_SETTLE_S` and reading it back; under it, the alias
is read again right before it is set (if it moved since the decision read it, the decision is made
again against the new champion) and once more after. What remains: a writer that does not take the
lock (the MLflow UI, another tool) can still move the alias between that last read and the set;
the read after the set reports it but cannot undo it. Two redblue promoters can both believe they
hold the lock only if one stalls for longer than :data:`LOCK_SETTLE_S` between reading the tag and
writing it, or holds it past :data:`LOCK_TTL_S` (expiry uses each machine's clock).
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from trainers.data import Dataset, Split
from trainers.models import CONFIG_FILE, load_model, predict

CHAMPION, CHALLENGER = "champion", "challenger"
LOCK_TAG = "redblue.promotion_lock"
LOCK_TTL_S = 120.0  # a crashed promoter's lock is taken over after this
LOCK_SETTLE_S = 1.0  # between writing the lock tag and reading it back
LOCK_WAIT_S = 300.0  # how long to wait for another promotion to finish
LOCK_POLL_S = 0.5
MAX_ATTEMPTS = 3  # decisions made again when the champion moves meanwhile


class PromotionError(RuntimeError):
    """The alias could not be set safely; the message says why (the version keeps no alias)."""


@dataclass(frozen=True)
class Score:
    """A model's score on a test split: accuracy (higher wins) or mean squared error (lower)."""

    metric: str
    value: float

    @property
    def higher_is_better(self) -> bool:
        return self.metric == "test_accuracy"


@dataclass(frozen=True)
class FeatureSchema:
    """What a model takes and gives: clients built for one schema fail against another."""

    task: str
    width: int
    feature_names: tuple[str, ...]
    classes: tuple[Any, ...]

    @classmethod
    def from_model_config(cls, config: dict[str, Any]) -> FeatureSchema:
        return cls(
            task=str(config.get("task", "")),
            width=int(config.get("in_features", 0)),
            feature_names=tuple(str(n) for n in config.get("feature_names") or ()),
            classes=tuple(config.get("classes") or ()),
        )

    @classmethod
    def of_directory(cls, final_model_dir: Path) -> FeatureSchema:
        """The schema of a saved model folder (its ``model_config.json``)."""
        return cls.from_model_config(json.loads((Path(final_model_dir) / CONFIG_FILE).read_text()))


def schema_changes(old: FeatureSchema, new: FeatureSchema) -> list[str]:
    """What differs from ``old`` to ``new``, one phrase each; empty when they are the same."""
    changes = []
    if old.task != new.task:
        changes.append(f"task {old.task} -> {new.task}")
    if old.width != new.width:
        changes.append(f"{old.width} features -> {new.width}")
    if old.feature_names != new.feature_names:
        pairs = zip(old.feature_names, new.feature_names, strict=False)
        first = next((i for i, (a, b) in enumerate(pairs) if a != b), None)
        if first is None:
            changes.append("feature names differ in count")
        else:
            changes.append(
                f"feature {first} is named {new.feature_names[first]!r}, "
                f"was {old.feature_names[first]!r}"
            )
    if old.classes != new.classes:
        changes.append(f"classes {list(old.classes)} -> {list(new.classes)}")
    return changes


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str


def decide(
    challenger: Score,
    champion: Score | None,
    *,
    changes: Sequence[str] = (),
    allow_schema_change: bool = False,
    has_champion: bool | None = None,
) -> Decision:
    """Promote when there is no champion, or when the challenger takes the champion's inputs
    (``changes`` is empty, or ``allow_schema_change``) and is strictly better.

    ``has_champion`` (default: whether ``champion`` is scored) tells a champion that could not be
    scored on this data from no champion at all.
    """
    exists = champion is not None if has_champion is None else has_champion
    if not exists:
        return Decision(True, "there was no champion yet")
    if changes:
        listed = "; ".join(changes)
        if not allow_schema_change:
            return Decision(
                False,
                f"its input schema differs from the champion's ({listed}): the champion's clients "
                "would get 422; --allow-schema-change promotes it anyway",
            )
        return Decision(True, f"its input schema differs ({listed}) and --allow-schema-change")
    if champion is None:
        return Decision(True, "the champion cannot be scored on this sweep's data")
    if champion.metric != challenger.metric:
        return Decision(
            True,
            f"the champion was scored by {champion.metric}, this model by {challenger.metric}: "
            "they solve different tasks",
        )
    better = (
        challenger.value > champion.value
        if challenger.higher_is_better
        else challenger.value < champion.value
    )
    comparison = (
        f"{challenger.metric} {challenger.value:.4f} against the champion's {champion.value:.4f} "
        "on the same test split"
    )
    if better:
        return Decision(True, f"it beats the champion: {comparison}")
    return Decision(False, f"it does not beat the champion: {comparison}")


def score_model(final_model_dir: Path, dataset: Dataset, split: Split) -> Score:
    """Score saved weights on the test part T of ``split``."""
    model, spec = load_model(final_model_dir)
    if spec.in_features != dataset.features.shape[1]:
        raise ValueError(
            f"the model takes {spec.in_features} features, the data has {dataset.features.shape[1]}"
        )
    predictions, _ = predict(model, spec, dataset.features[split.test])
    if dataset.task == "classification":
        truth = np.asarray(dataset.classes)[dataset.labels[split.test]]
        return Score("test_accuracy", float(np.mean(predictions == truth)))
    truth = dataset.labels[split.test].astype(np.float64)
    return Score("test_mse", float(np.mean((predictions - truth) ** 2)))


# -- the lock ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Lock:
    owner: str
    expires: float


def format_lock(lock: Lock) -> str:
    return json.dumps({"owner": lock.owner, "expires": round(lock.expires, 3)})


def parse_lock(value: str | None) -> Lock | None:
    """The lock a tag value holds; None when empty or unreadable (treated as free)."""
    if not value:
        return None
    try:
        raw = json.loads(value)
        return Lock(str(raw["owner"]), float(raw["expires"]))
    except (ValueError, KeyError, TypeError):
        return None


def lock_state(value: str | None, owner: str, now: float) -> str:
    """``free`` (no lock, an unreadable one, or an expired one), ``mine`` or ``held``."""
    lock = parse_lock(value)
    if lock is None or lock.expires <= now:
        return "free"
    return "mine" if lock.owner == owner else "held"


def new_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


def _lock_tag(client, name: str) -> str | None:
    return client.get_registered_model(name).tags.get(LOCK_TAG)


@contextmanager
def registry_lock(
    client,
    name: str,
    *,
    owner: str | None = None,
    wait_s: float = LOCK_WAIT_S,
    ttl_s: float = LOCK_TTL_S,
    settle_s: float = LOCK_SETTLE_S,
    log: Callable[[str], Any] = lambda _: None,
) -> Iterator[str]:
    """Hold the promotion lock of registered model ``name`` (see the module's docstring)."""
    from mlflow.exceptions import MlflowException

    owner = owner or new_owner()
    deadline = time.time() + wait_s
    told = False
    while True:
        value = _lock_tag(client, name)
        state = lock_state(value, owner, time.time())
        if state == "free":
            lock = Lock(owner, time.time() + ttl_s)
            try:
                client.set_registered_model_tag(name, LOCK_TAG, format_lock(lock))
            except MlflowException:  # two writers at once (SQLite: UNIQUE constraint): retry
                pass
            else:
                time.sleep(settle_s)
                if lock_state(_lock_tag(client, name), owner, time.time()) == "mine":
                    break
        elif state == "held" and not told:
            holder = parse_lock(value)
            log(f"waiting for another promotion of {name} ({holder.owner if holder else '?'})")
            told = True
        if time.time() > deadline:
            raise PromotionError(
                f"another promotion of {name} held its lock (tag {LOCK_TAG}: {value}) for "
                f"{wait_s:.0f} s"
            )
        time.sleep(LOCK_POLL_S)
    try:
        yield owner
    finally:
        if lock_state(_lock_tag(client, name), owner, time.time()) == "mine":
            client.delete_registered_model_tag(name, LOCK_TAG)


# -- promotion --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Promotion:
    alias: str
    decision: Decision
    champion_before: str | None  # the version that held the alias when the decision was made


def promote(
    client,
    name: str,
    version: str,
    judge: Callable[[str | None], Decision],
    *,
    log: Callable[[str], Any] = lambda _: None,
    **lock_options: Any,
) -> Promotion:
    """Give ``version`` the alias ``champion`` or ``challenger`` as ``judge(champion_version)``
    decides, setting it only while the champion is still the one ``judge`` was shown.

    ``judge`` runs outside the lock (it scores models: seconds); under the lock the champion is
    read again, and when it moved the judgement is made again (at most :data:`MAX_ATTEMPTS`
    times). The alias is read back after it is set. Raises :class:`PromotionError` when it
    cannot be set safely.
    """
    from orchestrator.tracking import alias_version

    seen = alias_version(client, name, CHAMPION)
    for _ in range(MAX_ATTEMPTS):
        decision = judge(seen)
        alias = CHAMPION if decision.promote else CHALLENGER
        with registry_lock(client, name, log=log, **lock_options):
            now = alias_version(client, name, CHAMPION)
            if now != seen:
                log(
                    f"the champion of {name} moved from {_v(seen)} to {_v(now)} while this "
                    "decision was made; deciding again"
                )
                seen = now
                continue
            client.set_registered_model_alias(name, alias, version)
            after = alias_version(client, name, CHAMPION)
        expected = version if alias == CHAMPION else seen
        if after != expected:
            raise PromotionError(
                f"right after {name} v{version} was set as @{alias}, @{CHAMPION} pointed at "
                f"{_v(after)}, not {_v(expected)}: a writer that does not take redblue's lock "
                "moved it; check the registry"
            )
        return Promotion(alias, decision, seen)
    raise PromotionError(
        f"the champion of {name} moved during each of {MAX_ATTEMPTS} decisions; v{version} was "
        "registered without an alias"
    )


def _v(version: str | None) -> str:
    return f"v{version}" if version else "none"
