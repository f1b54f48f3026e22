"""The model registry: register a version, and make it champion only if it wins.

A new version takes the alias ``champion`` only if it beats the current champion on the same test
split (both are scored here, by the same code, on the split of this sweep) and takes the same
inputs (feature names, width, task and classes, from each model's ``model_config.json``; a
different schema is promoted only with ``--allow-schema-change``); otherwise it becomes
``challenger``. :func:`decide` is the whole rule, kept pure for unit tests.

MLflow's registry has no compare-and-set, so :func:`promote` builds the nearest honest thing: it
decides outside the promotion lock (:mod:`orchestrator.registry_lock`), and under it reads the
alias again right before it is set (if it moved since the decision read it, the decision is made
again against the new champion) and once more after. What remains: a writer that does not take the
lock (the MLflow UI, another tool) can still move the alias between that last read and the set;
the read after the set reports it but cannot undo it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from orchestrator import console
from orchestrator.registry_lock import PromotionError, registry_lock
from trainers.dataset import Dataset, Split
from trainers.errors import InputError
from trainers.export.runtime import Predict, load_predictor
from trainers.spec import CONFIG_FILE, ModelSpec
from trainers.tasks import task_for

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

CHAMPION, CHALLENGER = "champion", "challenger"
DECISION_TAG = "redblue.decision"  # on a version: why it took the alias it holds
PREVIOUS_CHAMPION_TAG = "redblue.champion_before"  # on a champion: the champion it replaced
MAX_ATTEMPTS = 3  # decisions made again when the champion moves meanwhile


@dataclass(frozen=True)
class Score:
    """A model's score on a test split, by its family's rule (``Family.score``): for the
    tabular families accuracy (higher wins) or mean squared error (lower)."""

    metric: str
    value: float
    higher_is_better: bool


@dataclass(frozen=True)
class FeatureSchema:
    """What a model takes and gives: clients built for one schema fail against another."""

    task: str
    width: int  # raw input columns (not the encoded width, which follows P''s categories)
    feature_names: tuple[str, ...]
    classes: tuple[Any, ...]
    types: tuple[str, ...] = ()  # each column's type (number, category, boolean)

    @classmethod
    def from_model_config(cls, config: dict[str, Any]) -> FeatureSchema:
        names = tuple(str(n) for n in config.get("feature_names") or ())
        columns = (config.get("preprocessing") or {}).get("columns") or []
        types = {c["name"]: c["type"] for c in columns}
        return cls(
            task=str(config.get("task", "")),
            width=len(names) or int(config.get("in_features", 0)),
            feature_names=names,
            classes=tuple(config.get("classes") or ()),
            types=tuple(types.get(name, "number") for name in names),
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
    if old.feature_names == new.feature_names and old.types and new.types:
        changes += [
            f"column {name!r} is a {now}, was a {was}"
            for name, was, now in zip(new.feature_names, old.types, new.types, strict=True)
            if was != now
        ]
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
    """Score a saved model on the test part T of ``split``: its weights, or an exported model's
    graph in ONNX Runtime (int8 included), as it would be served."""
    predict_rows, spec = load_predictor(final_model_dir)
    rule = task_for(spec).score(spec)
    value = test_score(predict_rows, spec, dataset, split)
    return Score(rule.metric, value, rule.higher_is_better)


def test_score(predict_rows: Predict, spec: ModelSpec, dataset: Dataset, split: Split) -> float:
    """The score's metric of ``predict_rows`` (a model's weights, or its graph) on T."""
    task = task_for(spec)
    if task.measure is not None:  # a score that is not a function of predictions (generation)
        return task.measure(predict_rows, spec, dataset, split)
    features, truth = test_inputs(spec, dataset, split)
    assert truth is not None  # only a measured task's inputs come without truth
    return task.score(spec).score(predict_rows(features)[0], truth)


def test_inputs(
    spec: ModelSpec, dataset: Dataset, split: Split
) -> tuple[np.ndarray, np.ndarray | None]:
    """What a model is scored on: T's raw rows through the model's own preprocessing, and the
    truth in the data's own terms (class values, or numbers); a generative model's requests
    for T's classes, and no truth. ValueError when the model cannot take this data."""
    task = task_for(spec)
    if task.measured_on is not None:
        return task.measured_on(spec, dataset, split), None
    try:
        features = task_for(spec).input_schema(spec).rows(dataset.raw_rows(split.test))
    except InputError as exc:
        raise ValueError(f"the model cannot take this data: {exc}") from None
    labels = dataset.labels[split.test]
    truth = np.asarray(dataset.classes)[labels] if dataset.task == "classification" else labels
    return features, truth


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


def register_version(model_uri: str, name: str, tags: dict[str, str]) -> str:
    """Register ``model_uri`` as a new version of registered model ``name``; returns the version."""
    import mlflow

    from orchestrator.tracking import tracking_uri

    mlflow.set_tracking_uri(tracking_uri())
    version = mlflow.register_model(model_uri, name, tags=tags)
    return str(version.version)


def alias_version(client: MlflowClient, name: str, alias: str) -> str | None:
    """The version holding ``alias`` in registered model ``name``, or None."""
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def promote_version(
    client,
    name: str,
    version: str,
    model_dir: Path,
    dataset: Dataset,
    split: Split,
    *,
    allow_schema_change: bool = False,
) -> tuple[Promotion, Score]:
    """Score the new ``version`` and the current champion on the test part of ``split``, compare
    their input schemas, and set the alias the decision gives while the champion has not moved
    (:func:`promote`). Returns the promotion and the new version's score.
    """
    from orchestrator.tracking import fetch_final_model

    challenger = score_model(model_dir, dataset, split)
    schema = FeatureSchema.of_directory(model_dir)

    def judge(champion_version: str | None):
        if champion_version is None:
            return decide(challenger, None)
        directory = fetch_final_model(f"models:/{name}/{champion_version}")
        changes = schema_changes(FeatureSchema.of_directory(directory), schema)
        champion = None
        if not changes:
            try:
                champion = score_model(directory, dataset, split)
            except ValueError as exc:
                console.err.print(f"the current champion cannot be scored on this data: {exc}")
        return decide(
            challenger,
            champion,
            changes=changes,
            allow_schema_change=allow_schema_change,
            has_champion=True,
        )

    promotion = promote(client, name, version, judge, log=console.err.print)
    if promotion.alias == CHAMPION:  # what `redblue rollback` goes back to
        before = promotion.champion_before or "none"
        client.set_model_version_tag(name, version, PREVIOUS_CHAMPION_TAG, before)
    client.set_model_version_tag(name, version, DECISION_TAG, promotion.decision.reason)
    return promotion, challenger
