"""Generative adversarial networks on tables (``model.kind: gan``): a generator and a discriminator
per replica, each its own engine and optimizer; plain, conditional, hinge and Wasserstein (with
gradient penalty) losses, spectral normalization of the discriminator. Its models generate rows
(``trainers.tasks.generation``); the torch code is ``trainers.families.gan_net`` (the networks)
and ``trainers.families.gan_objective`` (training and measuring them)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import Field, model_validator

from trainers.config import OptimConfig, Section
from trainers.data.generation_input import noise_rows
from trainers.families.base import Export, Family, Feed, Graph
from trainers.sections import init_from_field
from trainers.spec import ModelSpec

if TYPE_CHECKING:
    from torch import nn

    from trainers.families.base import Objective
    from trainers.families.gan_objective import Adversarial

GENERATOR, DISCRIMINATOR = "generator", "discriminator"
D_LR_RATIO = 4  # the discriminator's lr over the generator's, unless model.d_lr is set


class GANConfig(Section):
    """A generative adversarial network that learns to generate the table's rows."""

    kind: Literal["gan"] = Field("gan", description="Model family: gan.")
    loss: Literal["bce", "hinge", "wgan_gp"] = Field(
        "hinge",
        description="Adversarial loss: bce (the original, non-saturating), hinge, or wgan_gp "
        "(Wasserstein with a gradient penalty).",
    )
    conditional: bool = Field(
        True,
        description="Generator and discriminator see the label, so rows of a given class can be "
        "asked for.",
    )
    spectral_norm: bool | None = Field(
        None,
        description="Spectral normalization of every discriminator layer; unset: on for bce and "
        "hinge, off for wgan_gp (its gradient penalty already bounds the discriminator).",
    )
    generator: list[int] = Field(
        default_factory=lambda: [128, 128], min_length=1, description="Generator layer widths."
    )
    discriminator: list[int] = Field(
        default_factory=lambda: [128, 128],
        min_length=1,
        description="Discriminator layer widths.",
    )
    latent: int = Field(32, ge=1, le=4096, description="Size of the generator's noise.")
    d_steps: int | None = Field(
        None,
        ge=1,
        le=20,
        description="Discriminator steps per generator step (on the same batch, fresh noise "
        "each); unset: 5 for wgan_gp (as its paper trains), 1 otherwise.",
    )
    gp_weight: float = Field(10.0, ge=0.0, description="wgan_gp: weight of the gradient penalty.")
    d_lr: float | None = Field(
        None,
        gt=0.0,
        le=10.0,
        description="The discriminator's learning rate (two time-scale updates); unset: "
        f"{D_LR_RATIO} x optim.lr. The generator's is optim.lr (for a gan 1e-4 unless set; "
        "optim.beta1 0.5 unless set).",
    )
    init_from: str | None = init_from_field()

    @model_validator(mode="after")
    def _positive_widths(self) -> GANConfig:
        for name in (GENERATOR, DISCRIMINATOR):
            if any(width < 1 for width in getattr(self, name)):
                raise ValueError(f"every {name} width must be >= 1, got {getattr(self, name)}")
        return self

    @property
    def discriminator_steps(self) -> int:
        return self.d_steps or (5 if self.loss == "wgan_gp" else 1)

    @property
    def normalized(self) -> bool:
        """Whether the discriminator is spectrally normalized."""
        return self.spectral_norm if self.spectral_norm is not None else self.loss != "wgan_gp"


def build(spec: ModelSpec) -> nn.Module:
    from trainers.families import gan_net

    cfg = GANConfig.model_validate(spec.options)
    return gan_net.build(
        spec,
        latent=cfg.latent,
        conditional=cfg.conditional,
        generator=cfg.generator,
        discriminator=cfg.discriminator,
        spectral_norm=cfg.normalized,
    )


def fit(model: nn.Module, features: np.ndarray, targets: np.ndarray | None) -> None:
    """The generator's standardization and number ranges, from P'."""
    from trainers.families.gan_net import Generator

    generator = model.get_submodule("generator")
    assert isinstance(generator, Generator)
    generator.fit_rows(features)


def objective(
    spec: ModelSpec, model: nn.Module, class_weights: Sequence[float] | None = None
) -> Objective:
    return adversarial(spec)


def adversarial(spec: ModelSpec) -> Adversarial:
    """The objective of a model of this family, from its options and its stored judge."""
    import torch

    from trainers.data.judge import GENERATION, Generation
    from trainers.families.gan_objective import Adversarial, Judge

    cfg = GANConfig.model_validate(spec.options)
    stored = Generation.from_dict(spec.preprocessing[GENERATION])
    return Adversarial(
        cfg.loss,
        cfg.latent,
        cfg.discriminator_steps,
        cfg.gp_weight,
        cfg.conditional,
        Judge(stored.judge),
        torch.tensor(stored.priors, dtype=torch.float64),
    )


def predict(
    model: nn.Module, spec: ModelSpec, requests: np.ndarray
) -> tuple[np.ndarray, np.ndarray | None]:
    """Generated rows for ``requests`` (``[class code, seed, offset]`` each, from
    ``trainers.data.generation_input``): the encoded row with its class code last."""
    import torch

    from trainers.families.gan_objective import noise_for

    objective = adversarial(spec)
    replica: Any = {GENERATOR: _Bare(model.get_submodule("generator"))}  # an Engine's surface
    labels = torch.as_tensor(requests[:, 0].astype(np.int64))
    noise = noise_for(requests[:, 1].astype(np.int64), requests[:, 2].astype(np.int64), objective)
    model.eval()
    with torch.no_grad():
        rows = objective.generate(replica, labels, noise).numpy()
    return np.column_stack([rows, requests[:, 0]]).astype(np.float32), None


NOISE, LABEL, ROWS = "noise", "label", "rows"


def graph(model: nn.Module, spec: ModelSpec) -> Graph:
    """The exported graph of a GAN: its generator, from noise and class codes to rows."""
    from trainers.families.gan_net import Generating, Generator

    cfg = GANConfig.model_validate(spec.options)
    generator = model.get_submodule("generator")
    assert isinstance(generator, Generator)
    width = generator.input_mean.shape[0]
    classes = len(spec.classes)
    return Graph(
        module=Generating(generator, classes, cfg.conditional).eval(),
        inputs={
            NOISE: np.zeros((2, cfg.latent), dtype=np.float32),
            LABEL: np.zeros(2, dtype=np.int64),
        },
        dynamic={NOISE: {0: "batch"}, LABEL: {0: "batch"}},
        output=ROWS,
        meaning={
            NOISE: f"[batch, {cfg.latent}] float32: standard normal noise, one row per row "
            "generated (redblue draws row i of a request with seed s from numpy's "
            "default_rng([s, i]))",
            LABEL: f"[batch] int64: the class code of each row (0-{classes - 1}, in classes' "
            "order)" + ("" if cfg.conditional else "; unused: the model is not conditional"),
            ROWS: f"[batch, {width}] float32: encoded rows (numbers in the table's units, "
            "categories one-hot), decoded into columns as preprocessing says",
        },
    )


def feeds(spec: ModelSpec, requests: np.ndarray) -> list[Feed]:
    """Requests ``[code, seed, offset]`` as the graph's noise and class codes."""
    latent = GANConfig.model_validate(spec.options).latent
    seeds, offsets = requests[:, 1].astype(np.int64), requests[:, 2].astype(np.int64)
    return [
        Feed(
            None,
            {NOISE: noise_rows(seeds, offsets, latent), LABEL: requests[:, 0].astype(np.int64)},
        )
    ]


def answer(
    spec: ModelSpec, requests: np.ndarray, rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray | None]:
    """The generated rows with their class code last, as ``predict`` gives them."""
    return np.column_stack([rows, requests[:, 0]]).astype(np.float32), None


class _Bare:
    """A network outside any engine, with the surface ``Adversarial.generate`` reads."""

    def __init__(self, module: nn.Module) -> None:
        self.module = module

    def forward(self, inputs):
        return self.module(inputs)


def networks(model: nn.Module) -> dict[str, nn.Module]:
    return {
        GENERATOR: model.get_submodule("generator"),
        DISCRIMINATOR: model.get_submodule("discriminator"),
    }


def network_optim(network: str, optim: OptimConfig, options: dict) -> OptimConfig:
    """The discriminator's own learning rate (``model.d_lr``, else ``D_LR_RATIO`` times the
    generator's); the generator's is optim.lr."""
    if network != DISCRIMINATOR:
        return optim
    return optim.model_copy(update={"lr": float(options.get("d_lr") or D_LR_RATIO * optim.lr)})


FAMILY = Family(
    kind="gan",
    config=GANConfig,
    build=build,
    fit=fit,
    objective=objective,
    predict=predict,
    networks=networks,
    network_optim=network_optim,
    pbt_mutable=("model.d_lr", "model.gp_weight"),
    task="generation",
    # Adam as DCGAN trains: a small lr for the generator (the discriminator's is d_lr), beta1 0.5.
    optim_defaults={"lr": 1e-4, "beta1": 0.5},
    export=Export(graph=graph, feeds=feeds, answer=answer),
)
