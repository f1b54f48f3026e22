"""Bounded reading of a request body, shared by every task's request (``serve_apps.requests``):
the byte budget per value, the two errors (400 for a body that is not JSON, 422 for JSON the model
cannot take), the JSON decoder, and the collection of up to :data:`MAX_PROBLEMS` problems."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

F32_MAX = float(np.finfo(np.float32).max)
MAX_PROBLEMS = 5  # validation stops after this many problems
# The body limit per value: a number as Python or JavaScript print it, pretty-printed.
BYTES_PER_VALUE = 48
BYTES_PER_ROW = 32
BASE_BYTES = 1024
NUMBER_TYPES = frozenset({int, float})  # JSON numbers; bool is a type of its own
KINDS = {bool: "a boolean", str: "a string", dict: "an object", list: "a list", type(None): "null"}


class BodyError(ValueError):
    """The body is not JSON at all (400)."""


class InputError(ValueError):
    """The request cannot be predicted on; the message says why (422)."""


class Problems:
    """Collects problems up to :data:`MAX_PROBLEMS`, then stops validation."""

    class Full(Exception):
        pass

    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, problem: str) -> None:
        self.items.append(problem)
        if len(self.items) >= MAX_PROBLEMS:
            raise self.Full

    def raise_any(self, stopped: bool = False) -> None:
        if self.items:
            suffix = f" (validation stopped after {MAX_PROBLEMS} problems)" if stopped else ""
            raise InputError("; ".join(self.items) + suffix)


def decode_json(body: bytes) -> Any:
    """The body's JSON document, or a BodyError (400) naming what is malformed."""
    try:
        return json.loads(body)
    except RecursionError:
        raise BodyError("malformed JSON: nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, an over-long integer
        raise BodyError(f"malformed JSON: {exc}") from None


def kind_of(value: Any) -> str:
    """How a JSON value is named in a message: a string, null, an object, ..."""
    return KINDS.get(type(value), type(value).__name__)


def round_down(value: float) -> float:
    """``value`` rounded down to two significant digits (a bound that reads well)."""
    if value <= 0 or not math.isfinite(value):
        return value
    exponent = math.floor(math.log10(value)) - 1
    return float(f"{math.floor(value / 10.0**exponent)}e{exponent}")
