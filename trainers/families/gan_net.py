"""The networks of ``model.kind: gan``: the generator and the discriminator, each trained by its
own engine and optimizer (the objective is ``trainers.families.gan_objective``).

Rows live in three spaces. The *encoded* space is the preprocessing's dense block
(``trainers.data.preprocessing``): numbers in the table's units, categories one-hot. The
*adversarial* space is where the two networks meet: numbers standardized on P', categories as
they are. The generator writes a row as numbers and one block of logits per category; in training
each block goes through a Gumbel softmax (``GUMBEL_TAU``) so that gradients reach it, and a row
given to a user is made one-hot (argmax), its numbers clipped to P''s range (and rounded where P'
held whole numbers only, ``trainers.data.generation_input``). The discriminator and the
generator see the asked class beside a row when ``model.conditional`` (the discriminator by
projection).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from trainers.data.judge import blocks
from trainers.data.preprocessing import of_model
from trainers.families.scaled import Scaled
from trainers.spec import ModelSpec

GUMBEL_TAU = 0.2


def _weight_dtype(module: nn.Module) -> torch.dtype:
    return next(module.parameters()).dtype


class Generator(Scaled):
    """Noise (and the asked class) in; a row of the adversarial space's width out (category
    blocks as logits). Its buffers hold P''s standardization and number ranges."""

    low: torch.Tensor
    high: torch.Tensor

    def __init__(
        self,
        latent: int,
        conditions: int,
        hidden: Sequence[int],
        spans: list[tuple[int, int]],
        width: int,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        inputs = latent + conditions
        for size in hidden:
            layers += [nn.Linear(inputs, size), nn.LayerNorm(size), nn.ReLU()]
            inputs = size
        layers.append(nn.Linear(inputs, width))
        self.net = nn.Sequential(*layers)
        self.latent, self.spans = latent, spans
        self.add_scaling(width)
        self.register_buffer("low", torch.full((width,), -math.inf))
        self.register_buffer("high", torch.full((width,), math.inf))

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.net(inputs.to(_weight_dtype(self))).float()

    def shaped(self, raw: torch.Tensor, hard: bool) -> torch.Tensor:
        """Raw outputs as adversarial rows: each category block a Gumbel softmax (training) or
        one-hot (``hard``); numbers as they are."""
        pieces, start = [], 0
        for low, high in self.spans:
            pieces.append(raw[:, start:low])
            logits = raw[:, low:high]
            if hard:
                pieces.append(F.one_hot(logits.argmax(dim=1), high - low).to(raw.dtype))
            else:
                pieces.append(F.gumbel_softmax(logits, tau=GUMBEL_TAU, hard=False))
            start = high
        pieces.append(raw[:, start:])
        return torch.cat(pieces, dim=1)

    def encoded(self, rows: torch.Tensor) -> torch.Tensor:
        """Adversarial rows (categories one-hot) in the encoded space, as a user gets them."""
        values = rows.float() * self.input_std + self.input_mean
        return torch.maximum(torch.minimum(values, self.high), self.low)

    def fit_rows(self, features: np.ndarray) -> None:
        """P''s standardization of the numbers (categories stay 0/1) and their ranges."""
        self.set_normalization(features, None)
        low, high = features.min(axis=0), features.max(axis=0)
        for start, stop in self.spans:
            self.input_mean[start:stop], self.input_std[start:stop] = 0.0, 1.0
            low[start:stop], high[start:stop] = 0.0, 1.0
        self.low.copy_(torch.as_tensor(low, dtype=torch.float32))
        self.high.copy_(torch.as_tensor(high, dtype=torch.float32))


class Generating(nn.Module):
    """The generator as its exported graph: noise ``[batch, latent]`` and class codes
    ``[batch]`` in, encoded rows out (categories one-hot, numbers in the table's units), as
    ``Adversarial.generate`` gives them."""

    def __init__(self, generator: Generator, classes: int, conditional: bool) -> None:
        super().__init__()
        self.generator, self.classes, self.conditional = generator, classes, conditional

    def forward(self, noise: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        inputs = noise
        if self.conditional:
            inputs = torch.cat([noise, F.one_hot(label.long(), self.classes).float()], dim=1)
        raw = self.generator(inputs)
        return self.generator.encoded(self.generator.shaped(raw, hard=True))


class Discriminator(nn.Module):
    """An adversarial row (and its class one-hot after it) in; one score out, real high. The
    class enters by projection (Miyato & Koyama, 2018): the score adds the inner product of the
    row's last hidden features with a learned vector of its class."""

    def __init__(
        self, width: int, conditions: int, hidden: Sequence[int], spectral_norm: bool
    ) -> None:
        super().__init__()
        normed = nn.utils.parametrizations.spectral_norm if spectral_norm else (lambda m: m)
        layers: list[nn.Module] = []
        inputs = width
        for size in hidden:
            layers += [normed(nn.Linear(inputs, size)), nn.LeakyReLU(0.2)]
            inputs = size
        self.body = nn.Sequential(*layers)
        self.head = normed(nn.Linear(inputs, 1))
        self.width = width
        self.projection = normed(nn.Linear(conditions, inputs, bias=False)) if conditions else None

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        dtype = _weight_dtype(self)
        self._power_vectors_in(dtype)
        inputs = inputs.to(dtype)
        features = self.body(inputs[:, : self.width])
        score = self.head(features).squeeze(-1)
        if self.projection is not None:
            score = score + (self.projection(inputs[:, self.width :]) * features).sum(dim=1)
        return score.float()

    def _power_vectors_in(self, dtype: torch.dtype) -> None:
        """Spectral normalization's power-iteration vectors in the weights' precision (mixed
        precision casts parameters, not buffers)."""
        for module in self.modules():
            if isinstance(module, nn.utils.parametrize.ParametrizationList):
                for norm in module:
                    for name in ("_u", "_v"):
                        vector = getattr(norm, name, None)
                        if vector is not None and vector.dtype != dtype:
                            setattr(norm, name, vector.to(dtype))


class GAN(nn.Module):
    """The two networks of a GAN model; each trains in its own engine."""

    def __init__(self, generator: Generator, discriminator: Discriminator) -> None:
        super().__init__()
        self.generator, self.discriminator = generator, discriminator


def build(
    spec: ModelSpec,
    *,
    latent: int,
    conditional: bool,
    generator: Sequence[int],
    discriminator: Sequence[int],
    spectral_norm: bool,
) -> GAN:
    spans = blocks(of_model(spec))
    width, conditions = spec.in_features, spec.out_features if conditional else 0
    return GAN(
        Generator(latent, conditions, generator, spans, width),
        Discriminator(width, conditions, discriminator, spectral_norm),
    )


@contextmanager
def frozen(module: nn.Module) -> Iterator[None]:
    """``module``'s parameters out of autograd: the generator's step backpropagates through the
    discriminator to its input, leaving the discriminator's gradients (and engine) untouched."""
    params = [p for p in module.parameters() if p.requires_grad]
    for param in params:
        param.requires_grad_(False)
    try:
        yield
    finally:
        for param in params:
            param.requires_grad_(True)
