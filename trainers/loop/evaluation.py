"""What the loop scores, and on which rows: the cross and held-out losses of an evaluation, the
fused candidate's ``val_loss``, the test metrics. No Ray, no MLflow.

An evaluation's cost is bounded, so that an epoch costs O(rows) however large the table
(``strategy.eval_rows``): a part (red, blue, V) larger than ``eval_rows`` is scored in slices
of a fixed, seeded permutation, one slice per evaluation in turn, so that consecutive evaluations
cover all of it. The round's monitoring and the fusion weight read the slices (the cross and
held-out losses). The fused candidate's ``val_loss``, which the decisions read (the kept model,
early stopping), is always on all of V: at every evaluation when V fits in ``eval_rows``; else
once every ``ceil(|V| / eval_rows)`` evaluations (a *decision*; a streamed table's at most
twice an epoch), the others reporting ``val/slice_loss`` on their slice of V. Every value is
all-reduced over the workers, so every worker takes the same decisions from them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from trainers.data.row_stream import StreamPlan
from trainers.dataset import Split
from trainers.engine import distributed
from trainers.engine.base import Replica
from trainers.engine.fusion import divergence, fused_view, fusion_alpha
from trainers.families.summed_metrics import Sums
from trainers.loop.cleaning import Cleaning
from trainers.loop.rounds import LoopConfig
from trainers.loop.streamed import Scoring, summed_parts

EVAL_BATCH = 4096
STREAMED_DECISIONS = 2  # a streamed table's decisions an epoch, at most
STREAM_BATCH = 32_768  # a streamed part: fewer, larger batches (each one a collective)
SLICE_STREAM = 6  # seeds the slices' permutations (after the split's and the noise's streams)


@dataclass(frozen=True)
class Slices:
    """Each part's rows in a fixed permutation, scored ``rows`` at a time."""

    parts: dict[str, np.ndarray]
    rows: int
    decide_every: int  # evaluations from one decision (all of V scored) to the next

    @classmethod
    def of(cls, split: Split, rows: int, seed: int, decide_every: int | None = None) -> Slices:
        parts = {"red": split.red, "blue": split.blue, "val": split.val}
        return cls(
            {
                name: np.random.default_rng([seed, SLICE_STREAM, i]).permutation(part)
                for i, (name, part) in enumerate(parts.items())
            },
            rows,
            decide_every or max(1, math.ceil(len(split.val) / rows)),
        )

    def count(self, name: str) -> int:
        """How many evaluations it takes to score all of the part."""
        return max(1, math.ceil(len(self.parts[name]) / self.rows))

    def take(self, name: str, evaluation: int) -> np.ndarray:
        """The rows of ``name`` that evaluation number ``evaluation`` (0-based) scores, sorted."""
        start = (evaluation % self.count(name)) * self.rows
        return np.sort(self.parts[name][start : start + self.rows])

    def halves_covered(self, evaluation: int) -> bool:
        """Whether this evaluation completes a turn over both halves (label issues are flagged
        then: once per turn, so that flagging too costs O(rows) an epoch)."""
        return (evaluation + 1) % max(self.count("red"), self.count("blue")) == 0

    def decision_due(self, evaluation: int) -> bool:
        """Whether this evaluation scores all of V (and so decides)."""
        return (evaluation + 1) % self.decide_every == 0


def streamed_decisions(cfg: LoopConfig, sizes: dict[str, int]) -> int:
    """Evaluations from one decision to the next on a streamed table: as in memory (all of V
    once per turn of its slices), but at most ``STREAMED_DECISIONS`` an epoch, since each reads
    the whole table to find V's rows."""
    strategy = cfg.strategy
    per_evaluation = 2 * strategy.phase_steps * cfg.optim.batch_size * strategy.eval_every
    evaluations = (sizes["red"] + sizes["blue"]) / per_evaluation  # an epoch's
    turn = math.ceil(sizes["val"] / strategy.eval_rows)
    return max(1, turn, math.ceil(evaluations / STREAMED_DECISIONS))


class Evaluator:
    """Scores replicas for the loop (``trainers.loop.trainer``)."""

    def __init__(
        self,
        cfg: LoopConfig,
        split: Split,
        objective,
        data: tuple[torch.Tensor, torch.Tensor],
        cleaning: Cleaning | None,
        stream: StreamPlan | None = None,
    ) -> None:
        self.cfg, self.split, self.objective, self.cleaning = cfg, split, objective, cleaning
        self.features, self.labels = data
        self.stream = stream  # a streamed table: split is its sample's, whole parts stream
        decide_every = streamed_decisions(cfg, stream.sizes) if stream is not None else None
        self.slices = Slices.of(split, cfg.strategy.eval_rows, cfg.seed, decide_every)
        # A generative objective's rows from the latest evaluation's model (``samples``).
        self.samples: np.ndarray | None = None

    def evaluate(
        self, replicas: dict[str, Replica], evaluation: int, decide: bool
    ) -> dict[str, float]:
        """Cross and held-out losses on this evaluation's slices, alpha, and the fused
        candidate's ``val_loss`` on all of V when ``decide`` (else ``val/slice_loss``)."""
        val = self.slices.take("val", evaluation)
        if "standard" in replicas:
            self._sample(replicas["standard"])
            return self.agreed(self._fused_loss(replicas["standard"], decide, val))
        red, blue = replicas["red"], replicas["blue"]
        metrics = self.agreed(
            {
                "red/val_loss": self._cross_loss(red, self.slices.take("blue", evaluation)),
                "blue/val_loss": self._cross_loss(blue, self.slices.take("red", evaluation)),
                "red/holdout_loss": self.loss(red, val),
                "blue/holdout_loss": self.loss(blue, val),
            }
        )
        alpha = self._alpha(metrics["red/holdout_loss"], metrics["blue/holdout_loss"])
        with fused_view(red, blue, alpha) as fused:
            metrics.update(self.agreed(self._fused_loss(fused, decide, val)))
            self._sample(fused)
        metrics["fusion/alpha"] = alpha
        metrics["fusion/divergence"] = divergence(red, blue, alpha)
        return metrics

    def _sample(self, replica: Replica) -> None:
        """The evaluated model's rows, where the objective draws them (every worker: under
        ZeRO-3 a forward pass is a collective)."""
        sampler = getattr(self.objective, "samples", None)
        self.samples = sampler(replica) if sampler is not None else None

    def alpha_now(self, replicas: dict[str, Replica], evaluation: int) -> float:
        """alpha from the held-out losses of now (a fusion in a round without evaluation)."""
        val = self.slices.take("val", evaluation)
        losses = self.agreed(
            {"red": self.loss(replicas["red"], val), "blue": self.loss(replicas["blue"], val)}
        )
        return self._alpha(losses["red"], losses["blue"])

    def validation(self, replica: Replica) -> dict[str, float]:
        """``val_loss`` on all of V; with ``strategy.clean`` under way, on V without its label
        issues (``val/label_issues``: how many were left out)."""
        if self.stream is not None:  # no strategy.clean when streamed
            return {"val_loss": _loss(self._summed({"val": (replica, ("val",))})["val"])}
        outputs, targets = self.predict(replica, self.split.val)
        keep = None if self.cleaning is None else self.cleaning.clean_validation(outputs, targets)
        # More of V where the family has them: a classifier's accuracy, a GAN's collapse.
        monitored: Callable[..., dict[str, float]]
        monitored = getattr(self.objective, "monitored", lambda outputs, targets: {})
        if keep is None:
            loss = self.objective.loss(outputs, targets)
            return {"val_loss": float(loss), **monitored(outputs, targets)}
        kept = torch.as_tensor(keep)
        loss = self.objective.loss(outputs[kept], targets[kept])
        extra = monitored(outputs[kept], targets[kept])
        return {"val_loss": float(loss), "val/label_issues": float((~keep).sum()), **extra}

    def test_metrics(self, replicas: dict[str, Replica]) -> dict[str, dict[str, float]]:
        """Each replica's test metrics on T (a streamed T: all of them in one pass)."""
        if self.stream is not None:
            summed = self._summed({name: (r, ("test",)) for name, r in replicas.items()})
            return {name: self.objective.metrics_of(sums) for name, sums in summed.items()}
        return {name: self._test_metrics(replica) for name, replica in replicas.items()}

    def final_scores(self, replica: Replica) -> dict[str, float]:
        """The kept model's test metrics on T, ``val_loss`` on V and ``final_train_loss`` on P'
        (streamed: in one pass over the table)."""
        if self.stream is None:
            return {
                **self._test_metrics(replica),
                **self.agreed(
                    {
                        **self.validation(replica),
                        "final_train_loss": self.loss(replica, self.split.train),
                    }
                ),
            }
        summed = self._summed(
            {
                "test": (replica, ("test",)),
                "val": (replica, ("val",)),
                "pool": (replica, ("red", "blue")),
            }
        )
        return {
            **self.objective.metrics_of(summed["test"]),
            "val_loss": _loss(summed["val"]),
            "final_train_loss": _loss(summed["pool"]),
        }

    def _test_metrics(self, replica: Replica) -> dict[str, float]:
        outputs, targets = self.predict(replica, self.split.test)
        return self.agreed(self.objective.metrics(outputs, targets))

    def _summed(self, scoring: Scoring) -> dict[str, Sums]:
        """The objective's sums over every row of a streamed table's parts, per name."""
        assert self.stream is not None
        width = self.features.shape[1]
        return summed_parts(self.stream, scoring, self.objective, width, STREAM_BATCH)

    @torch.no_grad()
    def predict(self, replica: Replica, index: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        for engine in replica.values():
            engine.module.eval()
        outputs = [
            self.objective.outputs(replica, self.features[index[i : i + EVAL_BATCH]]).float().cpu()
            for i in range(0, len(index), EVAL_BATCH)
        ]
        return torch.cat(outputs), self.labels[index]

    def loss(self, replica: Replica, index: np.ndarray) -> float:
        outputs, targets = self.predict(replica, index)
        return float(self.objective.loss(outputs, targets))

    @staticmethod
    def agreed(metrics: dict[str, float]) -> dict[str, float]:
        """The values averaged over all workers: the same on each, whatever rounding differs."""
        return dict(zip(metrics, distributed.all_reduce_mean(list(metrics.values())), strict=True))

    def _fused_loss(self, replica: Replica, decide: bool, val: np.ndarray) -> dict[str, float]:
        if decide:
            return self.validation(replica)
        return {"val/slice_loss": self.loss(replica, val)}

    def _cross_loss(self, replica: Replica, other_half: np.ndarray) -> float:
        """A replica's loss on (a slice of) the other replica's half; its class probabilities
        there are kept as the rows' cross-predictions (classification)."""
        outputs, targets = self.predict(replica, other_half)
        if self.cleaning is not None:
            self.cleaning.record(other_half, outputs)
        return float(self.objective.loss(outputs, targets))

    def _alpha(self, red_holdout: float, blue_holdout: float) -> float:
        return fusion_alpha(
            self.cfg.strategy.fusion,
            red_ratio=self.cfg.strategy.red_ratio,
            red_holdout=red_holdout,
            blue_holdout=blue_holdout,
        )


def _loss(sums: Sums) -> float:
    return float(sums["loss_sum"] / sums["loss_count"])
