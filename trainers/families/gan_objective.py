"""The objective of ``model.kind: gan`` (``trainers.families.base.Objective``): the adversarial
training step over a replica's two engines, and how a generator is measured: rows generated
beside real ones, compared in the features of the judge (``trainers.data.judge``) by the Fréchet
distance, the judge's reading of the classes asked for, and the rows drawn at each evaluation.
"""

from __future__ import annotations

import warnings
import zlib
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from trainers.data.generation_input import noise_rows
from trainers.data.judge import unpacked
from trainers.engine.base import Engine, Replica
from trainers.families.gan_net import Generator, frozen
from trainers.families.summed_metrics import Sums

COVERED_SHARE = 0.25  # a class is covered when at least this share of its asked rows read as it
SAMPLES_PER_CLASS, SAMPLES_SEED = 8, 1000  # the rows drawn at each evaluation


class Judge:
    """The fixed classifier of ``trainers.data.judge``, in torch: its hidden features and class."""

    def __init__(self, packed: dict) -> None:
        self.tensors = {name: torch.from_numpy(unpacked(value)) for name, value in packed.items()}

    def features(self, encoded: torch.Tensor) -> torch.Tensor:
        t = self.tensors
        scaled = (encoded.float().cpu() - t["mean"]) / t["std"]
        return torch.relu(scaled @ t["hidden_weight"].T + t["hidden_bias"])

    def classes(self, features: torch.Tensor) -> torch.Tensor:
        t = self.tensors
        return (features @ t["out_weight"].T + t["out_bias"]).argmax(dim=1)


@dataclass
class Adversarial:
    """The objective of a GAN replica (``trainers.families.base.Objective``).

    A training step is ``d_steps`` discriminator steps on the batch (fresh noise each), then one
    generator step. Evaluation generates one row per real row (classes drawn from P''s priors,
    noise seeded by the rows themselves, so the same rows give the same sample) and the outputs
    are the judge's features of both, the asked classes and the judge's reading of them; the loss
    is the Fréchet distance between the two sets of features.
    """

    loss_kind: str
    latent: int
    d_steps: int
    gp_weight: float
    conditional: bool
    judge: Judge
    priors: torch.Tensor
    extra_losses: tuple[str, ...] = ("d_loss",)

    @property
    def classes(self) -> int:
        return len(self.priors)

    def _beside(self, values: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Noise or rows with their class one-hot beside them (when conditional)."""
        if not self.conditional:
            return values
        return torch.cat([values, F.one_hot(labels.long(), self.classes).float()], dim=1)

    # -- training ------------------------------------------------------------------------------
    def train_step(
        self,
        replica: Replica,
        features: torch.Tensor,
        targets: torch.Tensor,
        weights: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``d_steps`` discriminator steps, one generator step; returns (g_loss, d_loss)."""
        generator, discriminator = replica["generator"], replica["discriminator"]
        shaper: Generator = generator.module  # type: ignore[assignment]
        device = shaper.input_mean.device  # the engines' (a GPU's, where they train on one)
        real, targets = shaper.scale(features.to(device)), targets.to(device)
        count = len(real)
        d_loss = torch.zeros(())
        for _ in range(self.d_steps):
            with torch.no_grad():
                noise = torch.randn(count, self.latent, device=device)
                raw = generator.forward(self._beside(noise, targets))
                fake = shaper.shaped(raw, hard=False)
            d_loss = self._discriminator_loss(discriminator, real, fake, targets)
            discriminator.backward(d_loss)
            discriminator.step()
        # The generator's loss backpropagates through the discriminator's module itself, frozen
        # and outside its engine: an engine's forward takes any backward through its output
        # for its own (DeepSpeed refuses it, or scales and reduces for its optimizer).
        with frozen(discriminator.module):
            noise = torch.randn(count, self.latent, device=device)
            raw = generator.forward(self._beside(noise, targets))
            rows = self._beside(shaper.shaped(raw, hard=False), targets)
            scores = discriminator.module(rows)
            g_loss = F.softplus(-scores).mean() if self.loss_kind == "bce" else -scores.mean()
            generator.backward(g_loss)
            generator.step()
        return torch.stack([g_loss.detach().float().cpu(), d_loss.detach().float().cpu()])

    def _discriminator_loss(
        self, discriminator: Engine, real: torch.Tensor, fake: torch.Tensor, labels: torch.Tensor
    ) -> torch.Tensor:
        both = torch.cat([self._beside(real, labels), self._beside(fake, labels)])
        scores = discriminator.forward(both)
        on_real, on_fake = scores[: len(real)], scores[len(real) :]
        if self.loss_kind == "bce":
            return F.softplus(-on_real).mean() + F.softplus(on_fake).mean()
        if self.loss_kind == "hinge":
            return F.relu(1.0 - on_real).mean() + F.relu(1.0 + on_fake).mean()
        return (
            on_fake.mean()
            - on_real.mean()
            + self.gp_weight * self._penalty(discriminator, real, fake, labels)
        )

    def _penalty(
        self, discriminator: Engine, real: torch.Tensor, fake: torch.Tensor, labels: torch.Tensor
    ) -> torch.Tensor:
        """WGAN-GP's gradient penalty on rows between real and generated ones (a double
        backward through the discriminator)."""
        mix = torch.rand(len(real), 1, device=real.device)
        between = (mix * real + (1.0 - mix) * fake).requires_grad_(True)
        scores = discriminator.module(self._beside(between, labels))  # no engine hooks, as above
        (grads,) = torch.autograd.grad(scores.sum(), between, create_graph=True)
        return ((grads.norm(2, dim=1) - 1.0) ** 2).mean()

    # -- evaluation ----------------------------------------------------------------------------
    def generate(self, replica: Replica, labels: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Encoded rows of the asked classes from ``noise`` (a row each), as a user gets them."""
        generator = replica["generator"]
        shaper: Generator = generator.module  # type: ignore[assignment]
        device = shaper.input_mean.device
        raw = generator.forward(self._beside(noise.to(device), labels.to(device)))
        return shaper.encoded(shaper.shaped(raw, hard=True)).cpu()

    @torch.no_grad()
    def outputs(self, replica: Replica, features: torch.Tensor) -> torch.Tensor:
        """The judge's features of the real rows and of as many generated ones, the asked
        classes and the judge's reading of the generated rows."""
        features = features.float().cpu()
        seed = zlib.crc32(features.numpy().tobytes())
        draw = torch.Generator().manual_seed(seed)
        asked = torch.multinomial(self.priors, len(features), replacement=True, generator=draw)
        fake = self.generate(
            replica, asked, torch.randn(len(features), self.latent, generator=draw)
        )
        real_features, fake_features = self.judge.features(features), self.judge.features(fake)
        read = self.judge.classes(fake_features)
        return torch.cat(
            [real_features, fake_features, asked[:, None].float(), read[:, None].float()], dim=1
        )

    def summary(self, outputs: torch.Tensor, targets: torch.Tensor) -> Sums:
        width = (outputs.shape[1] - 2) // 2
        values = outputs.double().numpy()
        real, fake = values[:, :width], values[:, width : 2 * width]
        asked, read = values[:, 2 * width].astype(int), values[:, 2 * width + 1].astype(int)
        halves = np.arange(len(values)) % 2 == 0
        return {
            **moments("real", real),
            **moments("fake", fake),
            **moments("real_a", real[halves]),
            **moments("real_b", real[~halves]),
            "asked": np.bincount(asked, minlength=self.classes).astype(np.float64),
            "read": np.bincount(read, minlength=self.classes).astype(np.float64),
            "agreed": np.bincount(asked[asked == read], minlength=self.classes).astype(np.float64),
        }

    def metrics_of(self, sums: Sums) -> dict[str, float]:
        fd = frechet_distance(sums, "real", "fake")
        covered = (sums["asked"] > 0) & (
            (sums["agreed"] if self.conditional else sums["read"]) >= COVERED_SHARE * sums["asked"]
        )
        metrics = {
            "test_loss": fd,
            "test_fd": fd,
            "test_fd_real": frechet_distance(sums, "real_a", "real_b"),
            "test_classes_covered": float(covered.sum()),
        }
        if self.conditional:
            metrics["test_label_accuracy"] = float(sums["agreed"].sum() / sums["asked"].sum())
        return metrics

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return torch.tensor(frechet_distance(self.summary(outputs, targets), "real", "fake"))

    @torch.no_grad()
    def samples(self, replica: Replica) -> np.ndarray:
        """``SAMPLES_PER_CLASS`` rows of each class from fixed noise (the same at every
        evaluation, so the pictures show the generator change), as ``predict`` answers them."""
        codes = np.repeat(np.arange(self.classes), SAMPLES_PER_CLASS)
        offsets = np.arange(len(codes))
        noise = noise_for(np.full(len(codes), SAMPLES_SEED), offsets, self)
        for engine in replica.values():
            engine.module.eval()
        rows = self.generate(replica, torch.as_tensor(codes), noise).numpy()
        return np.column_stack([rows, codes]).astype(np.float32)

    def monitored(self, outputs: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
        """At each evaluation, on V: what shows mode collapse (``val/classes_covered``) and a
        generator that ignores the class (``val/label_accuracy``)."""
        metrics = self.metrics(outputs, targets)
        names = ("test_classes_covered", "test_label_accuracy")
        return {f"val/{name[5:]}": metrics[name] for name in names if name in metrics}

    def metrics(self, outputs: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
        return self.metrics_of(self.summary(outputs, targets))


def noise_for(seeds: np.ndarray, offsets: np.ndarray, objective: Adversarial) -> torch.Tensor:
    """Row ``offset`` of request ``seed``'s noise, for each row (``noise_rows``)."""
    return torch.as_tensor(noise_rows(seeds, offsets, objective.latent))


def moments(name: str, rows: np.ndarray) -> Sums:
    return {
        f"{name}_count": np.float64(len(rows)),
        f"{name}_sum": rows.sum(axis=0),
        f"{name}_outer": rows.T @ rows,
    }


def frechet_distance(sums: Sums, first: str, second: str) -> float:
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)) of two sets of features, from their
    moments' sums (as the FID is computed)."""
    from scipy import linalg

    mean1, cov1 = _mean_cov(sums, first)
    mean2, cov2 = _mean_cov(sums, second)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a singular product: the offset below answers it
        root = linalg.sqrtm(cov1 @ cov2)
        if not np.isfinite(root).all():
            offset = np.eye(len(cov1)) * 1e-6
            root = linalg.sqrtm((cov1 + offset) @ (cov2 + offset))
    trace = np.trace(cov1) + np.trace(cov2) - 2.0 * np.trace(np.real(root))
    return float(np.sum((mean1 - mean2) ** 2) + trace)


def _mean_cov(sums: Sums, name: str) -> tuple[np.ndarray, np.ndarray]:
    count = float(sums[f"{name}_count"])
    mean = sums[f"{name}_sum"] / count
    cov = (sums[f"{name}_outer"] - count * np.outer(mean, mean)) / max(count - 1.0, 1.0)
    return mean, cov
