"""The promotion lock of a registered model: MLflow's registry has no compare-and-set.

An advisory lock held in a tag of the registered model (``redblue.promotion_lock``: owner and
expiry), taken by writing the tag, waiting :data:`LOCK_SETTLE_S` and reading it back; under it,
:func:`orchestrator.registry.promote` reads the alias again right before it is set and once more
after. Two redblue promoters can both believe they hold the lock only if one stalls for longer
than :data:`LOCK_SETTLE_S` between reading the tag and writing it, or holds it past
:data:`LOCK_TTL_S` (expiry uses each machine's clock).
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

LOCK_TAG = "redblue.promotion_lock"
LOCK_TTL_S = 120.0  # a crashed promoter's lock is taken over after this
LOCK_SETTLE_S = 1.0  # between writing the lock tag and reading it back
LOCK_WAIT_S = 300.0  # how long to wait for another promotion to finish
LOCK_POLL_S = 0.5


class PromotionError(RuntimeError):
    """The alias could not be set safely; the message says why (the version keeps no alias)."""


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
