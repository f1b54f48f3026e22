"""A killed worker resumes from its checkpoint; a killed driver's run goes on with `train --resume`;
CLI runs talk to loopback addresses only."""

from __future__ import annotations

import ipaddress
import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import pytest

from tests.helpers import default_test_part, kill_a_worker_after_first_checkpoint

pytestmark = pytest.mark.integration
REPO = Path(__file__).parents[2]


def test_killed_worker_resumes_from_checkpoint(train, mlflow_client, workspace):
    """A worker SIGKILLed after the first checkpoint: the run restarts its workers from it, in
    one MLflow run, under bf16 and ZeRO-1, and ends with a fused model served as tested."""
    killed: list[int] = []
    killer = threading.Thread(
        target=kill_a_worker_after_first_checkpoint,
        args=(workspace / "ray_results", "killed", killed),
    )
    killer.start()
    code, summary = train(
        "killed",
        optim={"epochs": 12},
        run={"max_failures": 1},
        deepspeed={"zero_stage": 1, "precision": "bf16"},  # bf16 resumes too
    )
    killer.join()
    assert killed, "no worker was killed"
    assert code == 0
    assert summary.metrics["test_accuracy"] >= 0.9
    experiment = mlflow_client.get_experiment_by_name("killed")
    runs = mlflow_client.search_runs([experiment.experiment_id])
    assert len(runs) == 1  # one MLflow run, not one per attempt
    assert runs[0].data.tags["redblue.restarts"] == "1"
    assert runs[0].data.tags["redblue.zero_stage"] == "1"  # as configured, through Ray Train
    assert runs[0].info.status == "FINISHED"
    # bf16: the fused model (not a replica) was tested, and serving's loader (weights + config
    # from MLflow) gives that model.
    assert summary.metrics["test_loss"] != summary.metrics["red/test_loss"]
    from orchestrator.serving.model_source import parse_model_uri, resolve_bundle
    from trainers.models import predict

    assert summary.model_uri.startswith("models:/m-")  # as `redblue train` prints it
    model, spec = resolve_bundle(parse_model_uri(summary.model_uri)).load()
    features, labels = default_test_part()
    predicted, _ = predict(model, spec, features)
    accuracy = float(np.mean(predicted == labels))
    assert accuracy == pytest.approx(summary.metrics["test_accuracy"], abs=0.02)


def descendants_connections() -> tuple[set[str], set[str]]:
    """(remote addresses of connections, wildcard listening sockets) of this process tree."""
    remotes, listening = set(), set()
    pids = {p.pid for p in psutil.Process(os.getpid()).children(recursive=True)} | {os.getpid()}
    for conn in psutil.net_connections(kind="inet"):
        if conn.pid not in pids:
            continue
        if conn.raddr:
            remotes.add(conn.raddr.ip)
        elif conn.status == psutil.CONN_LISTEN and conn.laddr.ip in ("0.0.0.0", "::"):
            listening.add(f"{conn.laddr.ip}:{conn.laddr.port} ({psutil.Process(conn.pid).name()})")
    return remotes, listening


def is_loopback(ip: str) -> bool:
    address = ipaddress.ip_address(ip)
    mapped = getattr(address, "ipv4_mapped", None)  # ::ffff:127.0.0.1
    return (mapped or address).is_loopback


class LoopbackSampler:
    """Samples this process tree's connections every 0.25 s while in its ``with`` block."""

    def __init__(self) -> None:
        self.remotes: set[str] = set()
        self.listening: set[str] = set()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample)

    def _sample(self) -> None:
        while not self._done.is_set():
            remotes, listening = descendants_connections()
            self.remotes.update(remotes)
            self.listening.update(listening)
            time.sleep(0.25)

    def __enter__(self) -> LoopbackSampler:
        self._thread.start()
        return self

    def __exit__(self, *_) -> None:
        self._done.set()
        self._thread.join()

    def check(self) -> None:
        assert self.remotes, "the sampler saw no connections at all"
        outside = {ip for ip in self.remotes if not is_loopback(ip)}
        assert not outside, f"connections to non-loopback addresses: {outside}"
        assert not self.listening, f"listening on all interfaces: {sorted(self.listening)}"


def test_a_run_whose_driver_was_killed_goes_on_exactly_with_train_resume(
    ray_session, workspace, mlflow_client
):
    """SIGKILL `redblue train`'s driver part way; `redblue -v train --resume RUN_ID --register
    --json` continues the same MLflow run from its last checkpoint and ends with the metrics of a
    run never stopped. Both commands talk to loopback addresses only; the resumed one prints one
    JSON object on stdout, the libraries' INFO logs on stderr, and registers a champion."""
    from orchestrator.config import load_config
    from orchestrator.training.run import train as run_train
    from trainers.loop.plan import plan_run

    sets = ["optim.epochs=40", "checkpoint.every_rounds=2", f"run.storage_path={workspace}/rr"]
    sets += ["scaling.num_workers=1", "scaling.cpus_per_worker=2"]  # the same shape both times
    command = [sys.executable, "-m", "orchestrator.cli"]
    options = [item for key in [*sets, "name=resumed"] for item in ("--set", key)]
    env = {**os.environ, "RAY_ADDRESS": ray_session}
    with LoopbackSampler() as sampler:
        with (workspace / "resumed-first.log").open("w") as log:
            driver = subprocess.Popen(
                [*command, "train", str(REPO / "configs/digits.yaml"), *options], env=env,
                cwd=workspace, stdout=log, stderr=log,
            )  # fmt: skip
        deadline, run_id = time.time() + 300, None
        while time.time() < deadline and driver.poll() is None:
            experiment = mlflow_client.get_experiment_by_name("resumed")
            runs = mlflow_client.search_runs([experiment.experiment_id]) if experiment else []
            if runs and runs[0].data.metrics.get("round", 0) >= 6:  # checkpoints at 2, 4, 6
                run_id = runs[0].info.run_id
                break
            time.sleep(0.3)
        driver.kill()
        driver.wait()
        assert run_id, (workspace / "resumed-first.log").read_text()[-3000:]

        resumed = subprocess.run(
            [*command, "-v", "train", "--resume", run_id, "--register", "--json"], env=env,
            cwd=workspace, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    sampler.check()
    # --json: stdout is one JSON object; the rounds and the summary table go to stderr.
    summary = json.loads(resumed.stdout)
    assert summary["run_id"] == run_id and "resuming at round" in resumed.stderr
    assert summary["exit_code"] == 0 and summary["model_uri"].startswith("models:/")
    assert "MLflow run_id" in resumed.stderr and re.search(r"round \d+/", resumed.stderr)
    assert "DeepSpeed info: version=" in resumed.stderr  # -v: DeepSpeed's INFO, from a worker
    # --register: a new registered model, so its first version is champion
    assert summary["registered"]["version"] == "1", summary
    assert summary["registered"]["alias"] == "champion"
    run = mlflow_client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.tags["redblue.resumed"] == "1"
    # Named as its Ray Train folder, with MLflow's own context tags.
    assert run.info.run_name == f"resumed-{run_id[:8]}"
    assert (workspace / "rr" / run.info.run_name).is_dir()
    assert run.data.tags["mlflow.user"] and run.data.tags["mlflow.source.name"]
    assert len(run.data.tags["mlflow.source.git.commit"]) == 40
    # The data it read (lineage), the classifier's curves, and an input example on the model.
    assert "digits" in {i.dataset.name for i in run.inputs.dataset_inputs}
    figures = {a.path for a in mlflow_client.list_artifacts(run_id)}
    assert {"roc_curve.png", "precision_recall_curve.png", "calibration.png"} <= figures
    import mlflow

    example = mlflow.models.Model.load(summary["model_uri"]).load_input_example()
    assert len(example) == 5 and len(example[0]) == 64  # five rows of T, 64 pixels each

    cfg = load_config(REPO / "configs/digits.yaml", [*sets, "name=never-stopped"])
    code, whole = run_train(cfg, plan_run(cfg), None)
    assert code == 0
    for key in ("test_loss", "test_accuracy", "red/test_loss", "blue/test_loss", "val_loss"):
        assert summary["metrics"][key] == whole.metrics[key], key

    again = subprocess.run(
        [*command, "train", "--resume", run_id], env=env, cwd=workspace, capture_output=True,
        text=True,
    )  # fmt: skip
    assert again.returncode == 2 and "already finished" in again.stderr
