"""``redblue promote`` and ``redblue rollback``: move a registered model's champion by hand,
through the gate and the lock a sweep uses (:mod:`orchestrator.registry`), each move recorded
in the registry's tags."""

from __future__ import annotations

import getpass
import time
from dataclasses import dataclass
from enum import Enum

import typer

from orchestrator import console
from orchestrator.exit_codes import EXIT_FAILED, EXIT_INVALID, EXIT_OK

# As orchestrator.registry names them; the registry loads torch, not wanted at the CLI's start.
CHAMPION, CHALLENGER = "champion", "challenger"

ROLLED_BACK_TAG = "redblue.rolled_back"  # on the version that lost the alias to a rollback
LAST_ROLLBACK_TAG = "redblue.last_rollback"  # on the registered model


class Alias(str, Enum):
    champion = CHAMPION
    challenger = CHALLENGER


@dataclass
class AliasMove:
    """What a promote or rollback did: ``version`` of ``name`` holds ``alias`` (None: none of
    redblue's), and the champion went from ``champion_before`` to ``champion``."""

    name: str
    version: str
    alias: str | None
    champion_before: str | None
    champion: str | None
    reason: str


def promote(
    model: str = typer.Argument(
        ..., help="The version to promote: models:/NAME/VERSION or models:/NAME@ALIAS."
    ),
    alias: Alias = typer.Option(
        Alias.champion,
        "--alias",
        help="champion: only if it beats the champion on its own test split and takes the same "
        "inputs (else it becomes challenger, exit 1); challenger: set as is.",
    ),
    allow_schema_change: bool = typer.Option(
        False, "--allow-schema-change", help="Let it become champion though its inputs differ."
    ),
    as_json: bool = typer.Option(False, "--json", help="One JSON object on stdout."),
) -> None:
    """Give a registered version the alias champion (through the gate a sweep applies, under
    the same lock) or challenger. The version it replaces is recorded in its tag
    redblue.champion_before, which `redblue rollback` goes back to."""
    _start(as_json)
    code, move = promote_version_by_hand(model, alias.value, allow_schema_change)
    _report(code, move, as_json)


def rollback(
    name: str = typer.Argument(..., help="The registered model, e.g. digits."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object on stdout."),
) -> None:
    """Give the alias champion back to the version that held it before the current champion
    (its tag redblue.champion_before), under the promotion lock; recorded in the tags
    redblue.rolled_back (the version that lost it) and redblue.last_rollback (the model)."""
    _start(as_json)
    code, move = rollback_champion(name)
    _report(code, move, as_json)


def promote_version_by_hand(
    model: str, alias: str, allow_schema_change: bool
) -> tuple[int, AliasMove | dict]:
    from orchestrator.exporting.source import SourceDataError, run_data
    from orchestrator.registry import DECISION_TAG, alias_version, promote_version
    from orchestrator.registry_lock import PromotionError, registry_lock
    from orchestrator.serving.model_source import ModelSourceError, parse_model_uri, resolve_bundle
    from orchestrator.tracking import fetch_final_model

    try:
        uri = parse_model_uri(model)
        if uri.kind not in ("version", "alias"):
            raise ModelSourceError(
                f"{model}: promote takes a registered version, models:/NAME/VERSION or "
                "models:/NAME@ALIAS"
            )
        bundle = resolve_bundle(uri)
    except ModelSourceError as exc:
        return console.refused(EXIT_INVALID, str(exc))
    client = _client()
    name, version = str(bundle.name), str(bundle.version)
    before = alias_version(client, name, CHAMPION)
    if before == version:
        return EXIT_OK, AliasMove(name, version, CHAMPION, before, before, "already the champion")
    try:
        if alias == CHALLENGER:
            with registry_lock(client, name, log=console.err.print):
                client.set_registered_model_alias(name, CHALLENGER, version)
            client.set_model_version_tag(name, version, DECISION_TAG, f"set by hand ({_who()})")
            return EXIT_OK, AliasMove(name, version, CHALLENGER, before, before, "set by hand")
        dataset, split = run_data(bundle)
        model_dir = fetch_final_model(f"models:/{name}/{version}")
        promotion, score = promote_version(
            client, name, version, model_dir, dataset, split,
            allow_schema_change=allow_schema_change,
        )  # fmt: skip
    except SourceDataError as exc:
        return console.refused(EXIT_INVALID, f"cannot judge {name} v{version}: {exc}")
    except PromotionError as exc:
        return console.refused(EXIT_FAILED, str(exc))
    now = alias_version(client, name, CHAMPION)
    reason = f"{promotion.decision.reason} ({score.metric} {score.value:.4f})"
    code = EXIT_OK if promotion.alias == CHAMPION else EXIT_FAILED
    return code, AliasMove(name, version, promotion.alias, promotion.champion_before, now, reason)


def rollback_champion(name: str) -> tuple[int, AliasMove | dict]:
    from mlflow.exceptions import MlflowException

    from orchestrator.registry import PREVIOUS_CHAMPION_TAG, alias_version
    from orchestrator.registry_lock import PromotionError, registry_lock

    client = _client()
    try:
        current = alias_version(client, name, CHAMPION)
        if current is None:
            client.get_registered_model(name)  # raises when there is no such model
            return console.refused(EXIT_FAILED, f"{name} has no champion to roll back")
        previous = client.get_model_version(name, current).tags.get(PREVIOUS_CHAMPION_TAG)
        if previous in (None, "", "none"):
            return console.refused(
                EXIT_FAILED,
                f"{name} v{current} became champion when there was none (or by another tool): "
                "there is no earlier champion to go back to",
            )
        client.get_model_version(name, previous)  # raises when it was deleted
        with registry_lock(client, name, log=console.err.print):
            if alias_version(client, name, CHAMPION) != current:
                raise PromotionError(f"the champion of {name} moved during the rollback")
            client.set_registered_model_alias(name, CHAMPION, previous)
        stamp = f"at {time.strftime('%Y-%m-%dT%H:%M:%S%z')} ({_who()})"
        client.set_model_version_tag(name, current, ROLLED_BACK_TAG, f"to v{previous} {stamp}")
        client.set_registered_model_tag(
            name, LAST_ROLLBACK_TAG, f"v{current} -> v{previous} {stamp}"
        )
    except MlflowException as exc:
        return console.refused(EXIT_INVALID, f"{name}: {str(exc).splitlines()[0]}")
    except PromotionError as exc:
        return console.refused(EXIT_FAILED, str(exc))
    reason = f"v{current} rolled back to v{previous}, the champion before it"
    return EXIT_OK, AliasMove(name, previous, CHAMPION, current, previous, reason)


def _start(as_json: bool) -> None:
    from orchestrator.environment import prepare_driver_env

    if as_json:
        console.use_json()
    prepare_driver_env(None)


def _report(code: int, move: AliasMove | dict, as_json: bool) -> None:
    if isinstance(move, AliasMove):
        was, now = (f"v{v}" if v else "none" for v in (move.champion_before, move.champion))
        rows = [
            ("model", f"{move.name} v{move.version}"),
            ("alias", f"@{move.alias}" if move.alias else "(none)"),
            ("champion", f"{was} -> {now}" if was != now else now),
            ("why", move.reason),
        ]
        console.print_summary(rows, title=f"{move.name}: champion {now}")
    console.finish(code, move, as_json)


def _client():
    from mlflow.tracking import MlflowClient

    from orchestrator.tracking import tracking_uri

    return MlflowClient(tracking_uri())


def _who() -> str:
    try:
        return f"redblue, by {getpass.getuser()}"
    except (KeyError, OSError):  # no user name in a container
        return "redblue"
