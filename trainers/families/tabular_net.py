"""The torch side shared by the supervised tabular families (``mlp``, ``linear``): a network
behind input standardization, its fitting on the training pool, prediction, and the supervised
objective. Each family builds its own ``net``; everything else here is common to them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from trainers.data.preprocessing import of_model
from trainers.engine.base import Replica
from trainers.families import summed_metrics as summed
from trainers.families.base import Graph
from trainers.families.exported import ANSWER, FEATURES, probabilities_or_values
from trainers.families.scaled import Scaled
from trainers.spec import ModelSpec

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "gelu": nn.GELU}
NETWORK = "model"  # the one network (and engine) of a tabular family


class Standardized(Scaled):
    """``net`` behind input standardization (and, for regression, a standardized target).

    The input is the encoded matrix of ``trainers.data.preprocessing``: a dense block of ``dense``
    columns, standardized, then one column of codes per embedded category, looked up in
    ``embeddings`` and appended. The statistics are buffers, so they travel with the weights and
    a served model takes the encoded raw features. ``l1`` / ``l2`` penalize the weights of every
    linear layer of ``net``; the penalty is computed in the forward pass (where ZeRO-3 has
    gathered the weights) and kept in ``penalty`` for the objective to add to the training loss.
    """

    def __init__(
        self,
        net: nn.Sequential,
        dense: int,
        l1: float = 0.0,
        l2: float = 0.0,
        embeddings: Sequence[tuple[int, int]] = (),
    ):
        super().__init__()
        self.net = net
        self.dense = dense
        self.l1, self.l2 = l1, l2
        self.penalty: torch.Tensor | None = None
        self.embeddings = nn.ModuleList(nn.Embedding(rows, dim) for rows, dim in embeddings)
        self.add_scaling(dense)

    @classmethod
    def for_spec(cls, spec: ModelSpec, net: nn.Sequential, **penalties: float) -> Standardized:
        dense, embeddings = layout(spec)
        return cls(net, dense, embeddings=embeddings, **penalties)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Raw outputs: logits (classification) or the standardized target (regression).

        Features are standardized in fp32 (the buffers stay fp32 under DeepSpeed's mixed
        precision, which casts parameters only) and only then cast to the weights' precision.
        """
        scaled = self.scale(features[:, : self.dense])
        if self.training and (self.l1 > 0 or self.l2 > 0):
            weights = [m.weight.float() for m in self.net if isinstance(m, nn.Linear)]
            if any(w.numel() == 0 for w in weights):  # partitioned away by ZeRO-3
                raise RuntimeError(
                    "model.l1 / model.l2 need the whole weights in the forward pass: under ZeRO-3 "
                    "use a smaller model or another zero_stage"
                )
            self.penalty = sum(
                (self.l1 * w.abs().sum() + self.l2 * w.pow(2).sum() for w in weights),
                torch.zeros((), device=scaled.device),
            )
        inputs = scaled[:, : self.dense].to(self.weight_dtype)
        if len(self.embeddings):
            codes = features[:, self.dense :].long()
            looked_up = [table(codes[:, i]) for i, table in enumerate(self.embeddings)]
            inputs = torch.cat([inputs, *(e.to(inputs.dtype) for e in looked_up)], dim=1)
        return self.net(inputs)

    @property
    def weight_dtype(self) -> torch.dtype:
        """The precision of the weights (bf16 or fp16 under DeepSpeed's mixed precision)."""
        return next(self.net.parameters()).dtype

    def set_normalization(self, features: np.ndarray, targets: np.ndarray | None) -> None:
        """Fit the standardization on training data (the dense block's columns)."""
        super().set_normalization(features[:, : self.dense], targets)


def layout(spec: ModelSpec) -> tuple[int, list[tuple[int, int]]]:
    """The encoded input's dense width and (rows, width) of each embedding."""
    fitted = of_model(spec)
    embeddings = [(column.cardinality, column.embedding_dim) for column in fitted.embedded]
    return len(fitted.dense_names), embeddings


def input_width(spec: ModelSpec) -> int:
    """The width ``net`` takes: the dense block and every embedding's vectors."""
    dense, embeddings = layout(spec)
    return dense + sum(dim for _, dim in embeddings)


def fit(model: nn.Module, features: np.ndarray, targets: np.ndarray | None) -> None:
    """Standardization fitted on the training pool P' (targets: regression only)."""
    assert isinstance(model, Standardized)
    model.set_normalization(features, targets)


def answered(model: nn.Module, spec: ModelSpec, outputs: torch.Tensor) -> torch.Tensor:
    """Raw outputs as the model's answer in numbers: class probabilities (classification) or
    values in the target's own units (regression)."""
    outputs = outputs.float()
    if spec.task == "classification":
        return torch.softmax(outputs, dim=-1)
    target_std, target_mean = model.get_buffer("target_std"), model.get_buffer("target_mean")
    return outputs.squeeze(-1) * target_std.float() + target_mean.float()


@torch.no_grad()
def predict(
    model: nn.Module, spec: ModelSpec, features: np.ndarray
) -> tuple[np.ndarray, np.ndarray | None]:
    """Predictions in the data's own terms: (labels, class probabilities) or (values, None)."""
    model.eval()
    device = next(model.parameters()).device
    outputs = model(torch.tensor(features, dtype=torch.float32, device=device))
    return probabilities_or_values(spec, features, answered(model, spec, outputs).cpu().numpy())


class Answering(nn.Module):
    """A network and its answer (:func:`answered`) as one module: the exported graph."""

    def __init__(self, model: nn.Module, spec: ModelSpec) -> None:
        super().__init__()
        self.model, self.spec = model, spec

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return answered(self.model, self.spec, self.model(features))


def graph(model: nn.Module, spec: ModelSpec) -> Graph:
    """The exported graph of a tabular model: encoded rows in, its answer out."""
    example = np.zeros((2, spec.in_features), dtype=np.float32)
    return Graph(
        module=Answering(model, spec).eval(),
        inputs={FEATURES: example},
        dynamic={FEATURES: {0: "batch"}},
        output=ANSWER,
        meaning={
            FEATURES: f"[batch, {spec.in_features}] float32: the values of feature_names, "
            "encoded as preprocessing says (numbers as they are; categories one-hot or as codes; "
            "gaps filled)",
            ANSWER: answer_meaning(spec),
        },
    )


def answer_meaning(spec: ModelSpec) -> str:
    if spec.task == "classification":
        return f"[batch, {len(spec.classes)}] float32: each class's probability, in classes' order"
    if spec.task == "forecast":
        return "[batch, horizon, targets] float32: the forecast, in the targets' own units"
    return "[batch] float32: the predicted value, in the target's own units"


class Supervised:
    """Cross-entropy for classification; MSE on the standardized target for regression.

    One network, one optimizer step per batch; the training loss adds the network's ``penalty``.
    Test metrics: ``test_accuracy`` or ``test_mse`` (in the target's own units).
    """

    def __init__(
        self,
        task: str,
        target_mean: float = 0.0,
        target_std: float = 1.0,
        class_weights: Sequence[float] | None = None,
    ) -> None:
        self.task, self.target_mean, self.target_std = task, target_mean, target_std
        self.class_weights = None if class_weights is None else torch.tensor(class_weights)

    @classmethod
    def for_model(
        cls, spec: ModelSpec, model: nn.Module, class_weights: Sequence[float] | None = None
    ) -> Supervised:
        mean, std = model.get_buffer("target_mean"), model.get_buffer("target_std")
        return cls(spec.task, float(mean), float(std), class_weights)

    def train_step(
        self,
        replica: Replica,
        features: torch.Tensor,
        targets: torch.Tensor,
        weights: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """One forward, backward and (micro-)step; returns the detached training loss (weighted
        as it was trained: by class weights and sample weights, when given)."""
        engine = replica[NETWORK]
        outputs = engine.forward(features)
        targets = targets.to(outputs.device)
        if self.class_weights is not None or weights is not None:
            loss = self._weighted_loss(outputs, targets, weights)
        else:
            loss = self.loss(outputs, targets)
        penalty = getattr(engine.module, "penalty", None)
        if penalty is not None:
            loss = loss + penalty
        engine.backward(loss)
        engine.step()
        return loss.detach()

    def _weighted_loss(
        self, outputs: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor | None
    ) -> torch.Tensor:
        """The training loss as a weighted mean over the batch: each sample weighs its class's
        weight (``optim.class_weights``) times its own (``strategy.clean``). A batch of weight 0
        has loss 0 and no gradient."""
        if self.task == "classification":
            per_sample = nn.functional.cross_entropy(outputs.float(), targets, reduction="none")
        else:
            scaled = (targets.float() - self.target_mean) / self.target_std
            per_sample = (outputs.float().squeeze(-1) - scaled).pow(2)
        weight = torch.ones_like(per_sample)
        if self.class_weights is not None:
            weight = weight * self.class_weights.to(outputs.device)[targets]
        if weights is not None:
            weight = weight * weights.to(outputs.device, torch.float32)
        return (weight * per_sample).sum() / weight.sum().clamp_min(1e-12)

    def outputs(self, replica: Replica, features: torch.Tensor) -> torch.Tensor:
        return replica[NETWORK].forward(features)

    def monitored(self, outputs: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
        """A classifier's ``val_accuracy`` on V at each evaluation (``sweep.metric`` may rank
        trials by it)."""
        if self.task != "classification":
            return {}
        return {"val_accuracy": float((outputs.argmax(-1) == targets).float().mean())}

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if self.task == "classification":
            return nn.functional.cross_entropy(outputs.float(), targets)
        scaled = (targets.float() - self.target_mean) / self.target_std
        return nn.functional.mse_loss(outputs.float().squeeze(-1), scaled)

    def metrics(self, outputs: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
        """Test metrics on T: the loss; for classification accuracy, macro F1, ROC-AUC (binary,
        or one-vs-rest macro; left out when T lacks a class) and the expected calibration error;
        for regression MSE, MAE and R² (in the target's own units)."""
        return self.metrics_of(self.summary(outputs, targets))

    def summary(self, outputs: torch.Tensor, targets: torch.Tensor) -> summed.Sums:
        """The batch's additive sums (``trainers.families.summed_metrics``)."""
        if self.task == "classification":
            return summed.classification_summary(outputs, targets)
        return summed.regression_summary(outputs, targets, self.target_mean, self.target_std)

    def metrics_of(self, sums: summed.Sums) -> dict[str, float]:
        if self.task == "classification":
            return summed.classification_metrics(sums)
        return summed.regression_metrics(sums)
