"""``strategy.clean`` in the red-blue loop: the replicas' cross-predictions kept at every
evaluation, label issues flagged from them once ``strategy.clean_start`` of the rounds have run,
the training weights that follow (prune or weight), and the report the run leaves
(``label_issues.csv``). The loop (``trainers.loop.trainer``) calls it; no Ray, no MLflow.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from trainers.loop.confident_learning import find_label_issues
from trainers.loop.cross_predictions import CrossPredictions
from trainers.loop.plan import RunPlan
from trainers.spec import LABEL_ISSUES_FILE


class Cleaning:
    """The cross-predictions of a red-blue classification run, and what ``strategy.clean``
    does with them (``off``: they are kept, nothing is flagged)."""

    def __init__(self, plan: RunPlan) -> None:
        self.strategy, self.dataset = plan.loop.strategy, plan.dataset
        self.num_rounds, self.noisy_rows = plan.rounds.num_rounds, plan.noisy_rows
        self.cross = CrossPredictions.start(plan.split, plan.dataset.num_outputs)
        self.given = plan.dataset.labels[self.cross.rows]
        self.row_weights: torch.Tensor | None = None  # set once flagging has begun

    def record(self, other_half: np.ndarray, outputs: torch.Tensor) -> None:
        """A replica's outputs (logits) on the other replica's half, averaged in."""
        self.cross.record(other_half, torch.softmax(outputs.float(), dim=-1).numpy())

    def evaluate(self, round_number: int) -> dict[str, float]:
        """After an evaluation's cross-predictions (that completed a turn over the halves):
        re-flag every row and reweigh training, once ``clean_start`` of the rounds have run;
        the label-issue metrics."""
        if self.strategy.clean == "off":
            return {}
        if round_number <= self.strategy.clean_start * self.num_rounds:
            return {}
        self.cross.flag(self.given, self.strategy.clean_max_fraction, round_number)
        self._set_row_weights()
        return self.metrics()

    def clean_validation(self, outputs: torch.Tensor, labels: torch.Tensor) -> np.ndarray | None:
        """Once flagging has begun, which rows of V to keep for ``val_loss``: V is out-of-sample
        for both replicas, so the fused candidate's probabilities there go through the same rule
        (beside P''s cross-predictions, its own group under the same cap); its label issues are
        left out, so that a V as dirty as the training labels does not select the model that
        fits them. None: keep all (before ``clean_start``, or with ``clean: off``)."""
        if not self.cross.active or self.strategy.clean == "off":
            return None
        held_out = torch.softmax(outputs.float(), dim=-1).numpy()
        scored = self.cross.scored
        probabilities = np.concatenate([self.cross.probabilities[scored], held_out])
        pool = len(scored)
        groups = [*self.cross.halves(scored), np.arange(pool, pool + len(labels))]
        given = np.concatenate([self.given[scored], labels.numpy()])
        flagged = find_label_issues(probabilities, given, groups, self.strategy.clean_max_fraction)
        return ~flagged[pool:]

    def weights(self, index: np.ndarray) -> torch.Tensor | None:
        """The training weights of the rows ``index`` (None: all weigh 1)."""
        return None if self.row_weights is None else self.row_weights[index]

    def metrics(self) -> dict[str, float]:
        return self.cross.metrics(self.noisy_rows) if self.cross.active else {}

    def write_report(self, directory: Path) -> None:
        """``label_issues.csv`` in ``directory``: the flagged rows, most confident first, as the
        user finds them in their data (row number or sequence id), with their classes' names."""
        import pandas as pd

        if not self.cross.active:
            return
        issues = self.cross.issues(self.given)
        where, names = self.dataset.sample_names(issues["index"])
        classes = np.asarray(self.dataset.classes, dtype=object)
        pd.DataFrame(
            {
                where: names,
                "given_label": classes[issues["given"]],
                "suggested_label": classes[issues["suggested"]],
                "p_given": np.round(issues["p_given"], 6),
                "first_flagged_round": issues["first_flagged_round"],
            }
        ).to_csv(directory / LABEL_ISSUES_FILE, index=False)

    def save(self, directory: Path, rank: int) -> None:
        self.cross.save(directory, rank)

    def load(self, directory: Path, rank: int) -> None:
        self.cross.load(directory, rank)
        self._set_row_weights()

    def _set_row_weights(self) -> None:
        mode = self.strategy.clean
        if not self.cross.active or mode not in ("prune", "weight"):
            return
        weights = self.cross.row_weights(mode, self.given, len(self.dataset.labels))
        self.row_weights = torch.as_tensor(weights)
