"""What a generative model takes and answers: requests for rows in, rows of the source's columns
out. No torch here (the serving API imports it); pandas is imported where used.

A request is a frame (or records, or one mapping) with ``n`` (rows to generate, default 1),
``label`` (the class asked for, as the data writes it; unset: drawn from the training pool's
class shares) and ``seed`` (default 0): the same request gives the same rows. The answer is a
frame with one column per feature column of the source, in the table's own units and
categories, and the label column last.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from trainers.data.preprocessing import Preprocessing, is_missing
from trainers.errors import InputError

if TYPE_CHECKING:
    import pandas as pd

REQUEST_COLUMNS = ("n", "label", "seed")
MAX_SEED = 2**31 - 1


@dataclass(frozen=True)
class GenerationInput:
    """Requests for generated rows, turned into one ``[class code, seed, offset]`` per row: row
    ``offset`` of a request of ``seed`` is drawn from noise of its own, so a request's rows are
    the same whatever other requests share its forward pass."""

    preprocessing: Preprocessing
    classes: tuple
    priors: tuple[float, ...]
    label: str
    whole: list[str]  # number columns of whole numbers only: generated values are rounded
    max_rows: int = 1_000_000

    @property
    def feature_names(self) -> tuple[str, ...]:
        return REQUEST_COLUMNS

    @property
    def width(self) -> int:
        return len(REQUEST_COLUMNS)

    def rows(self, model_input: Any) -> np.ndarray:
        """``model_input``'s requests (one per record) as ``[class code, seed, offset]`` rows."""
        pieces = []
        for record in _records(model_input):
            unknown = sorted(set(record) - set(REQUEST_COLUMNS))
            if unknown:
                raise InputError(
                    f"unknown field(s) {unknown}; a request takes {list(REQUEST_COLUMNS)}"
                )
            label = record.get("label")
            count = record.get("n", 1)
            labels = None if label is None or is_missing(label) else [label]
            pieces.append(self.requested(count, labels, record.get("seed", 0)))
        if not pieces:
            raise InputError("no request: give n (and label, seed)")
        if sum(len(piece) for piece in pieces) > self.max_rows:
            raise InputError(f"at most {self.max_rows} rows can be generated at once")
        return np.concatenate(pieces)

    def requested(self, count: Any, labels: list | None, seed: Any) -> np.ndarray:
        """One request: ``count`` rows of ``labels`` (one class for all, or one per row; none:
        drawn from the training pool's class shares) from ``seed``."""
        count = _integer(count, "n", 1, self.max_rows)
        seed = _integer(seed, "seed", 0, MAX_SEED)
        if labels is None:
            rng = np.random.default_rng(seed)
            codes = rng.choice(len(self.classes), count, p=self.priors).astype(np.float64)
        elif len(labels) in (1, count):
            codes = np.array([float(self._code(label)) for label in labels])
            codes = np.broadcast_to(codes, (count,))
        else:
            raise InputError(f"labels holds {len(labels)} classes; give 1, or n ({count})")
        offsets = np.arange(count, dtype=np.float64)
        return np.column_stack([codes, np.full(count, float(seed)), offsets]).astype(np.float32)

    def _code(self, label: Any) -> int:
        for code, known in enumerate(self.classes):
            if label == known or str(label) == str(known):
                return code
        raise InputError(f"unknown label {label!r}; the classes are {list(self.classes)}")

    def answer(self, generated: np.ndarray) -> pd.DataFrame:
        """Encoded rows with their class code last, as rows of the source's columns."""
        import pandas as pd

        dense = self.preprocessing.dense_names
        frame: dict[str, Any] = {}
        for column in self.preprocessing.columns:
            names = column.dense_names
            start = dense.index(names[0])
            block = generated[:, start : start + len(names)]
            if column.type == "category":
                slots = [*column.categories, None][: len(names)]
                frame[column.name] = [slots[i] for i in block.argmax(axis=1)]
            elif column.type == "boolean":
                frame[column.name] = block[:, 0] >= 0.5
            elif column.name in self.whole:
                frame[column.name] = block[:, 0].astype(np.float64).round()
            else:
                frame[column.name] = block[:, 0].astype(np.float64)
        frame[self.label] = [self.classes[int(code)] for code in generated[:, -1]]
        return pd.DataFrame(frame)


def plain(value: Any) -> Any:
    """A numpy scalar (a class as the data holds it) as the Python value JSON writes."""
    return value.item() if hasattr(value, "item") else value


def _records(model_input: Any) -> list[Mapping]:
    import pandas as pd

    if isinstance(model_input, pd.DataFrame):
        return [
            {k: v for k, v in record.items() if not is_missing(v)}
            for record in model_input.to_dict("records")
        ]
    if isinstance(model_input, Mapping):
        return [model_input]
    if isinstance(model_input, list) and all(isinstance(r, Mapping) for r in model_input):
        return model_input
    raise InputError("a generation request is a frame or records of n, label and seed")


def _integer(value: Any, name: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise InputError(f"{name} must be an integer, got {value!r}")
    if float(value) != int(value) or not low <= int(value) <= high:
        raise InputError(f"{name} must be an integer from {low} to {high}, got {value!r}")
    return int(value)


def noise_rows(seeds: np.ndarray, offsets: np.ndarray, latent: int) -> np.ndarray:
    """The generator's noise for each requested row ``[count, latent]`` float32: row ``offset``
    of request ``seed`` has a stream of its own, whatever rows it is generated with."""
    if not len(seeds):
        return np.zeros((0, latent), dtype=np.float32)
    return np.stack(
        [
            np.random.default_rng([int(seed), int(offset)]).standard_normal(latent)
            for seed, offset in zip(seeds, offsets, strict=True)
        ]
    ).astype(np.float32)
