"""One local Ray (on 127.0.0.1) and one SQLite MLflow store for the whole integration session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from orchestrator.environment import prepare_driver_env

BASE = {
    "seed": 0,
    "model": {"hidden": [128, 64], "dropout": 0.1},
    "optim": {
        "lr": 0.003,
        "epochs": 10,
        "schedule": "cosine",
        "warmup_steps": 10,
        "batch_size": 64,
        "grad_clip": 1.0,
    },
    "scaling": {"num_workers": 2, "cpus_per_worker": 1},
    "checkpoint": {"every_rounds": 2, "keep": 2},
}


def deep_merge(base: dict, extra: dict) -> dict:
    merged = dict(base)
    for key, value in extra.items():
        merged[key] = deep_merge(base.get(key, {}), value) if isinstance(value, dict) else value
    return merged


@pytest.fixture(scope="session")
def workspace(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("redblue")


@pytest.fixture(scope="session")
def ray_session(workspace):
    """Start the session's local Ray once; every integration test trains on it."""
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{workspace / 'mlflow.db'}"
    prepare_driver_env(None)
    import ray

    from orchestrator.environment import connect_ray
    from orchestrator.serving.ingress import prepare_serve_env

    prepare_serve_env("haproxy")  # as `redblue deploy` sets it before its local Ray starts
    connect_ray(None, 3)  # 2 cores; 3 logical CPUs let two small sweep trials run at once
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


def planned(workspace: Path, name: str, sections: dict):
    """(config, plan) of ``BASE`` merged with ``sections``, storing under the workspace."""
    from orchestrator.config import validate
    from trainers.loop.plan import plan_run

    tree = deep_merge(BASE, sections)
    if sections.get("model", {}).get("kind", "mlp") != "mlp":  # another family: its own section
        tree["model"] = dict(sections["model"])
    tree["name"] = name
    tree.setdefault("run", {})["storage_path"] = str(workspace / "ray_results")
    cfg = validate(tree)
    return cfg, plan_run(cfg)


@pytest.fixture(scope="session")
def train(ray_session, workspace):
    """Train in-process on the shared Ray: ``train(name, **sections) -> (exit code, summary)``."""
    from orchestrator.training.run import train as run_train

    return lambda name, **sections: run_train(*planned(workspace, name, sections), None)


@pytest.fixture(scope="session")
def sweep(ray_session, workspace):
    """Sweep in-process on the shared Ray: ``sweep(name, **sections) -> (exit code, summary)``."""
    from orchestrator.sweeps.run import sweep as run_sweep

    return lambda name, **sections: run_sweep(
        *planned(workspace, name, sections), None, resume=False
    )


@pytest.fixture(scope="session")
def mlflow_client(ray_session):
    from mlflow.tracking import MlflowClient

    return MlflowClient(os.environ["MLFLOW_TRACKING_URI"])


@pytest.fixture(scope="session")
def register_model(ray_session, workspace):
    """``register_model(name, seed) -> version``: a small real model logged and registered in
    MLflow the way a sweep registers one (pyfunc with weights + config), with test metrics."""
    from orchestrator.config import validate
    from orchestrator.registry import register_version
    from orchestrator.tracking import TrackedRun
    from tests.helpers import sample_rows, saved_model
    from trainers.spec import FINAL_MODEL_DIR

    def register(name: str, seed: int) -> str:
        tracked = TrackedRun.start(validate({"name": name}), {"redblue.kind": "test"})
        directory = saved_model(workspace / f"{name}-{seed}" / FINAL_MODEL_DIR, seed=seed)
        tracked.log_metrics({"test_accuracy": 0.5 + seed / 100})
        model_uri = tracked.log_model(directory, sample_rows(2))
        tracked.finish()
        return register_version(model_uri, name, {"seed": str(seed)})

    return register


@pytest.fixture(scope="session")
def serve_port(ray_session) -> int:
    """Serve's HTTP proxy for the session, on a free loopback port."""
    from ray import serve

    from orchestrator.environment import free_port

    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    yield port
    serve.shutdown()
