"""The seam carries a family of more than one network: a two-network family registered here
(an encoder and a head, each with its own engine and optimizer) trains red-blue through the real
loop, is fused network by network, resumes exactly from a checkpoint, and is saved and loaded as
one model. Nothing outside its declaration knows it (plain PyTorch engines, one process)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tests.helpers import Recorder, plain_trainer, without_timing
from trainers import families
from trainers.families import supervised, tabular_net
from trainers.families.base import Family
from trainers.families.mlp import MLPConfig
from trainers.loop.trainer import Trainer
from trainers.models import load_model
from trainers.spec import FINAL_MODEL_DIR, ModelSpec


class TwoNetworks(nn.Module):
    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        encoder = nn.Sequential(nn.Linear(spec.in_features, 32), nn.ReLU())
        self.encoder = tabular_net.Standardized(encoder, spec.in_features)
        self.head = nn.Linear(32, spec.out_features)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(features))


class EncoderThenHead(tabular_net.Supervised):
    """Cross-entropy through both networks; each engine steps its own optimizer."""

    def outputs(self, replica, features):
        return replica["head"].forward(replica["encoder"].forward(features))

    def train_step(self, replica, features, targets, weights=None):
        loss = self.loss(self.outputs(replica, features), targets)
        replica["head"].backward(loss)  # plain engines: one backward reaches both networks
        replica["encoder"].step()
        replica["head"].step()
        return loss.detach()


def fit(model, features, targets):
    tabular_net.fit(model.encoder, features, targets)


TWO = Family(
    kind="two",
    config=MLPConfig,  # unused: the test builds its plan without a config section of its own
    build=TwoNetworks,
    fit=fit,
    objective=lambda spec, model, class_weights: EncoderThenHead(spec.task),
    predict=supervised.predict,
    networks=lambda model: {"encoder": model.encoder, "head": model.head},
)


@pytest.fixture(autouse=True)
def registered(monkeypatch):
    monkeypatch.setitem(families.FAMILIES, "two", TWO)


def make_trainer(report, **sections) -> Trainer:
    return plain_trainer(report, {"kind": "two", "options": {}}, **sections)


SECTIONS = {"optim": {"epochs": 6, "lr": 0.003}, "checkpoint": {"every_rounds": 2}}


def test_two_networks_train_red_blue_and_fuse_network_by_network(tmp_path):
    recorder = Recorder(tmp_path)
    trainer = make_trainer(recorder, **SECTIONS)
    assert set(trainer.replicas["red"]) == {"encoder", "head"}
    final = trainer.run().metrics
    assert final["test_accuracy"] >= 0.85
    assert all(0 < m["fusion/divergence"] < 1 for m in recorder.metrics if "fusion/divergence" in m)
    for network in ("encoder", "head"):  # after the final fusion both replicas hold theta_f
        red = trainer.replicas["red"][network].masters().tensors
        blue = trainer.replicas["blue"][network].masters().tensors
        assert all(torch.equal(r, b) for r, b in zip(red, blue, strict=True))
    checkpoint = recorder.checkpoints[0]
    assert {"red-encoder.pt", "red-head.pt", "blue-encoder.pt", "blue-head.pt"} <= {
        p.name for p in checkpoint.iterdir()
    }
    model, spec = load_model(recorder.checkpoints[-1] / FINAL_MODEL_DIR)
    assert isinstance(model, TwoNetworks) and spec.kind == "two"
    test = trainer.split.test
    with torch.no_grad():
        loss = trainer.objective.loss(model(trainer.features[test]), trainer.labels[test])
    assert float(loss) == pytest.approx(final["test_loss"], rel=1e-5)


def test_two_networks_resume_exactly(tmp_path):
    expected = make_trainer(Recorder(tmp_path / "full"), **SECTIONS).run().metrics
    first = Recorder(tmp_path / "first")
    make_trainer(first, **SECTIONS).run()
    resumed = make_trainer(Recorder(tmp_path / "resumed"), **SECTIONS)
    torch.manual_seed(12345)
    resumed.restore(first.checkpoints[0])
    assert without_timing(resumed.run().metrics) == without_timing(expected)
