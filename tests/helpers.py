"""Small real models for the serving tests: built and saved by trainers, no training needed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from trainers.drift import summarize
from trainers.models import MLP, ModelSpec, save_model


def saved_model(directory: Path, *, seed: int, features: int = 8, hidden: int = 16) -> Path:
    """A 3-class MLP with random weights (by ``seed``) and fitted input scaling, saved to disk."""
    torch.manual_seed(seed)
    spec = ModelSpec(
        "mlp",
        features,
        3,
        [hidden],
        "relu",
        0.0,
        "classification",
        feature_names=[f"f{i}" for i in range(features)],
        classes=["a", "b", "c"],
    )
    data = np.random.default_rng(seed).normal(2.0, 3.0, size=(256, features)).astype(np.float32)
    spec.input_summary = summarize(data, spec.feature_names)  # what training stores, for drift
    model = MLP(spec)
    model.set_normalization(data, None)
    return save_model(directory, model, spec)


def sample_rows(count: int, features: int = 8, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).normal(2.0, 3.0, size=(count, features)).astype(np.float32)


DEPLOY_SCRIPT = """
import json, sys
from typer.testing import CliRunner
from orchestrator.cli import app
results = {}
for name, (env, args) in json.loads(sys.argv[1]).items():
    r = CliRunner().invoke(app, ["deploy", "models:/x/1", *args], env=env)
    results[name] = [r.exit_code, r.output]
results["ray imported"] = "ray" in sys.modules
results["mlflow imported"] = "mlflow.tracking" in sys.modules
print(json.dumps(results))
"""


def deploy_in_a_new_process(cases: dict[str, tuple[dict, list[str]]], home: Path) -> dict:
    """Run ``redblue deploy models:/x/1 ARGS`` with extra ENV for each ``{name: (ENV, ARGS)}`` in
    one new Python process (its imports are its own; HOME is ``home``, MLflow unreachable).

    Returns ``{name: [exit code, output], "ray imported": bool, "mlflow imported": bool}``.
    """
    env = {**os.environ, "HOME": str(home), "MLFLOW_TRACKING_URI": "http://127.0.0.1:9"}
    out = subprocess.run(
        [sys.executable, "-c", DEPLOY_SCRIPT, json.dumps(cases)],
        capture_output=True,
        text=True,
        cwd=home,
        env=env,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])
