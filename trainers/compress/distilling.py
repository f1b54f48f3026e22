"""Distillation (Hinton et al., 2015): the student's training loss is ``alpha`` times the
distance from the teacher's outputs plus ``1 - alpha`` times its own loss on the true labels.
For classification the distance is the KL divergence between the teacher's and the student's
softmax at ``temperature``, scaled by its square (so that its gradients keep their size); for
regression the squared difference of the two standardized outputs. Evaluation, metrics and
fusion are the student's own objective's: only training changes."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from trainers.compress.settings import Teacher
from trainers.engine.base import Replica
from trainers.families.base import Objective
from trainers.models import load_model_bytes

NETWORK = "model"  # a supervised family's one network


class Distilling:
    """The student's objective, trained against a teacher's outputs as well."""

    def __init__(self, student: Objective, teacher: nn.Module, task: str, settings: Teacher):
        self.student, self.teacher, self.task = student, teacher, task
        self.temperature, self.alpha = settings.temperature, settings.alpha

    @classmethod
    def of(cls, student: Objective, settings: Teacher, task: str, device) -> Distilling:
        teacher, _ = load_model_bytes(settings.weights, settings.model_config)
        for parameter in teacher.parameters():
            parameter.requires_grad_(False)
        return cls(student, teacher.to(device).eval(), task, settings)

    def train_step(
        self,
        replica: Replica,
        features: torch.Tensor,
        targets: torch.Tensor,
        weights: torch.Tensor | None = None,
    ) -> torch.Tensor:
        engine = replica[NETWORK]
        outputs = engine.forward(features)
        with torch.no_grad():
            taught = self.teacher(features.to(next(self.teacher.parameters()).device)).float()
        own = self.student.loss(outputs, targets.to(outputs.device))
        loss = self.alpha * self.distance(outputs.float(), taught.to(outputs.device))
        loss = loss + (1 - self.alpha) * own
        engine.backward(loss)
        engine.step()
        return loss.detach()

    def distance(self, outputs: torch.Tensor, taught: torch.Tensor) -> torch.Tensor:
        if self.task == "classification":
            t = self.temperature
            student = F.log_softmax(outputs / t, dim=-1)
            teacher = F.log_softmax(taught / t, dim=-1)
            return F.kl_div(student, teacher, log_target=True, reduction="batchmean") * t * t
        return F.mse_loss(outputs.reshape(taught.shape), taught)

    def __getattr__(self, name: str):
        """Everything else (outputs, loss, metrics, summary) is the student's objective's."""
        return getattr(self.student, name)
