"""The optimizers engines are built with (trainers/engine/base.py): the eager ones step exactly as
torch's own and never import ``torch._dynamo``."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from trainers.config import OptimConfig
from trainers.engine.base import EagerOnly, build_optimizer

SETTINGS = [
    OptimConfig(name="adamw", lr=0.01, weight_decay=0.1, batch_size=8),
    OptimConfig(name="adam", lr=0.01, weight_decay=0.1, batch_size=8),
    OptimConfig(name="sgd", lr=0.01, momentum=0.9, weight_decay=0.1, batch_size=8),
]


def _train(optimizer: torch.optim.Optimizer, model: torch.nn.Module, seed: int, steps: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        optimizer.zero_grad()
        features = torch.randn(16, 6, generator=generator)
        model(features).square().mean().backward()
        optimizer.step()


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(6, 12), torch.nn.Tanh(), torch.nn.Linear(12, 3))


def _equal_states(a: dict, b: dict) -> bool:
    """One parameter's optimizer state (tensors and numbers) in both."""
    same = [torch.equal(a[k], b[k]) if torch.is_tensor(a[k]) else a[k] == b[k] for k in a]
    return a.keys() == b.keys() and all(same)


@pytest.mark.parametrize("cfg", SETTINGS, ids=lambda c: c.name)
def test_an_eager_optimizer_steps_and_resumes_exactly_as_torchs_own(cfg: OptimConfig) -> None:
    torch_model, eager_model = _model(), _model()
    torch_opt = build_optimizer(torch_model.parameters(), cfg, eager=False)
    eager_opt = build_optimizer(eager_model.parameters(), cfg)
    assert isinstance(eager_opt, EagerOnly) and isinstance(eager_opt, type(torch_opt))
    assert not isinstance(torch_opt, EagerOnly)
    _train(torch_opt, torch_model, seed=1, steps=3)
    _train(eager_opt, eager_model, seed=1, steps=3)
    for a, b in zip(torch_model.parameters(), eager_model.parameters(), strict=True):
        assert torch.equal(a, b)
    torch_state, eager_state = torch_opt.state_dict(), eager_opt.state_dict()
    assert torch_state["param_groups"] == eager_state["param_groups"]
    for index, state in torch_state["state"].items():
        assert _equal_states(state, eager_state["state"][index])

    # Resumed from the state dict into a new optimizer, the next steps are torch's too.
    resumed = build_optimizer(eager_model.parameters(), cfg)
    resumed.load_state_dict(eager_state)
    _train(torch_opt, torch_model, seed=2, steps=2)
    _train(resumed, eager_model, seed=2, steps=2)
    for a, b in zip(torch_model.parameters(), eager_model.parameters(), strict=True):
        assert torch.equal(a, b)
    assert all(p.grad is not None for p in eager_model.parameters())
    resumed.zero_grad()
    assert all(p.grad is None for p in eager_model.parameters())


def test_an_eager_optimizer_never_imports_dynamo() -> None:
    """A worker's start-up without torch._dynamo (about 0.9 s); torch's own class imports it."""
    script = """
import sys, torch
from trainers.config import OptimConfig
from trainers.engine.base import build_optimizer
for eager in (True, False):
    model = torch.nn.Linear(4, 2)
    optimizer = build_optimizer(model.parameters(), OptimConfig(lr=0.01, batch_size=8), eager=eager)
    model(torch.randn(3, 4)).sum().backward()
    optimizer.step()
    optimizer.zero_grad()
    optimizer.load_state_dict(optimizer.state_dict())
    print(eager, "torch._dynamo" in sys.modules)
"""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120
    )
    assert result.stdout.split("\n")[:2] == ["True False", "False True"], result.stdout
