"""The red-blue replicas' cross-predictions: for every row of the training pool P', class
probabilities from the replica that does not train on it (red scores blue's half, blue scores
red's), kept from evaluation to evaluation, and the label issues they flag
(``trainers.loop.confident_learning``). Pure numpy; part of every checkpoint, so a resumed run
continues exactly.

Each evaluation's probabilities enter an exponential average: the new average is half the
evaluation's probabilities and half the earlier average (the first evaluation's are taken as
they are). They are strictly out-of-sample until the first fusion; after it each replica also
carries what the other learned (``docs/red-blue.md``), which the average damps.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from trainers.dataset import Split
from trainers.loop.confident_learning import find_label_issues

AVERAGE_KEEP = 0.5  # the earlier average's share at each evaluation
STATE_FILE = "cross_predictions_rank{rank}.npz"


@dataclass
class CrossPredictions:
    """Per row of P' (``rows``: dataset indices, sorted), its averaged out-of-sample class
    probabilities (NaN until scored), whether it is flagged now, and the round (1-based) of the
    evaluation that flagged it (0 when not flagged)."""

    rows: np.ndarray
    is_red: np.ndarray  # per row: in the red half (else in blue's)
    probabilities: np.ndarray
    flagged: np.ndarray
    first_flagged: np.ndarray
    active: bool = False  # flagging has begun (strategy.clean_start reached)

    @classmethod
    def start(cls, split: Split, num_classes: int) -> CrossPredictions:
        rows = split.train
        return cls(
            rows=rows,
            is_red=np.isin(rows, split.red),
            probabilities=np.full((len(rows), num_classes), np.nan, dtype=np.float32),
            flagged=np.zeros(len(rows), dtype=bool),
            first_flagged=np.zeros(len(rows), dtype=np.int32),
        )

    def record(self, indices: np.ndarray, probabilities: np.ndarray) -> None:
        """Average one evaluation's probabilities of the dataset rows ``indices`` in."""
        positions = np.searchsorted(self.rows, indices)
        earlier = self.probabilities[positions]
        fresh = np.asarray(probabilities, dtype=np.float32)
        self.probabilities[positions] = np.where(
            np.isnan(earlier), fresh, AVERAGE_KEEP * earlier + (1 - AVERAGE_KEEP) * fresh
        )

    @property
    def scored(self) -> np.ndarray:
        """Positions of the rows scored at least once (evaluations score large halves in
        slices: ``trainers.loop.evaluation``)."""
        return np.flatnonzero(~np.isnan(self.probabilities).any(axis=1))

    def halves(self, positions: np.ndarray) -> list[np.ndarray]:
        """Which of ``positions``' entries are red's, which blue's (indices into it)."""
        is_red = self.is_red[positions]
        return [np.flatnonzero(is_red), np.flatnonzero(~is_red)]

    def flag(self, labels: np.ndarray, max_fraction: float, round_number: int) -> None:
        """Re-check every scored row (a row can be unflagged) with its given ``labels`` (of
        ``rows``); a row not scored yet is not flagged."""
        scored = self.scored
        now = np.zeros(len(self.rows), dtype=bool)
        now[scored] = find_label_issues(
            self.probabilities[scored], labels[scored], self.halves(scored), max_fraction
        )
        self.first_flagged = np.where(
            now, np.where(self.flagged, self.first_flagged, round_number), 0
        ).astype(np.int32)
        self.flagged, self.active = now, True

    def row_weights(self, mode: str, labels: np.ndarray, size: int) -> np.ndarray:
        """Training weights of all ``size`` dataset rows: prune zeroes the flagged rows; weight
        takes each row of P' at its probability of its given label; other rows weigh 1."""
        weights = np.ones(size, dtype=np.float32)
        if mode == "prune":
            weights[self.rows[self.flagged]] = 0.0
        elif mode == "weight":
            p_given = self.probabilities[np.arange(len(self.rows)), labels]
            weights[self.rows] = np.where(np.isnan(p_given), 1.0, p_given)
        return weights

    def metrics(self, noisy_rows: np.ndarray | None) -> dict[str, float]:
        """``label_issues/count`` and ``/fraction``; ``/precision`` and ``/recall`` against the
        rows ``data.label_noise`` changed, when the run made them."""
        count = int(self.flagged.sum())
        out = {"label_issues/count": float(count), "label_issues/fraction": count / len(self.rows)}
        if noisy_rows is not None and len(noisy_rows):
            hits = int(np.isin(self.rows[self.flagged], noisy_rows).sum())
            out["label_issues/precision"] = hits / count if count else 0.0
            out["label_issues/recall"] = hits / len(noisy_rows)
        return out

    def issues(self, labels: np.ndarray) -> dict[str, np.ndarray]:
        """The flagged rows, most confident first (lowest probability of the given label):
        dataset index, given and suggested class, that probability, first flagged round."""
        positions = np.flatnonzero(self.flagged)
        given = labels[positions]
        probabilities = self.probabilities[positions]
        p_given = probabilities[np.arange(len(positions)), given]
        order = np.argsort(p_given, kind="stable")
        return {
            "index": self.rows[positions][order],
            "given": given[order],
            "suggested": probabilities.argmax(axis=1)[order],
            "p_given": p_given[order],
            "first_flagged_round": self.first_flagged[positions][order],
        }

    def save(self, directory: Path, rank: int) -> None:
        np.savez(
            directory / STATE_FILE.format(rank=rank),
            probabilities=self.probabilities,
            flagged=self.flagged,
            first_flagged=self.first_flagged,
            active=np.array(self.active),
        )

    def load(self, directory: Path, rank: int) -> None:
        with np.load(directory / STATE_FILE.format(rank=rank), allow_pickle=False) as saved:
            self.probabilities = saved["probabilities"]
            self.flagged = saved["flagged"]
            self.first_flagged = saved["first_flagged"]
            self.active = bool(saved["active"])
