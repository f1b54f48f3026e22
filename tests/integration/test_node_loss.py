"""Losing nodes of a `redblue cluster up` cluster mid-run: the run resumes on a spare node in
the same MLflow run, or fails clearly when no node is left to take the workers. A 3-node cluster
of this module's own (the first test leaves it 2 nodes)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.cluster_tools import REDBLUE, config_file, group_of, local_cluster, the_only_run

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with local_cluster(tmp_path_factory.mktemp("nodeloss"), nodes=3) as started:
        yield started


def worker_node_raylets(folder: Path) -> dict[int, str]:
    """{raylet pid: role} of the worker nodes (not the head, which holds the drivers)."""
    import psutil

    state = json.loads((folder / ".redblue" / "cluster.json").read_text())
    roles = {p["pid"]: p["role"] for p in state["processes"] if p["role"].startswith("worker")}
    found = {}
    for process in psutil.process_iter(["name"]):
        if process.info["name"] == "raylet" and group_of(process) in roles:
            found[process.pid] = roles[group_of(process)]
    return found


def raylet_of_a_train_worker(folder: Path) -> tuple[int, str] | None:
    """A worker node's raylet that hosts one of the run's Ray Train workers."""
    import psutil

    raylets = worker_node_raylets(folder)
    for process in psutil.process_iter(["cmdline"]):
        try:
            if "RayTrainWorker" in " ".join(process.info["cmdline"] or []):
                parent = process.ppid()
                if parent in raylets:
                    return parent, raylets[parent]
        except psutil.Error:
            continue
    return None


def kill_a_node_after_first_checkpoint(folder: Path, run_folder: str, timeout: float = 300):
    """SIGKILL the raylet of a worker node running a train worker, once a checkpoint exists.
    Returns the role of the node killed."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        victim = raylet_of_a_train_worker(folder)
        if victim and list((folder / "shared").glob(f"{run_folder}-*/checkpoint_*")):
            time.sleep(1.0)  # let the checkpoint's registration complete
            os.kill(victim[0], signal.SIGKILL)
            return victim[1]
        time.sleep(0.2)
    raise AssertionError("no checkpoint with a train worker on a worker node appeared")


def node_loss_config(folder: Path, name: str, epochs: int, start_timeout_s: float) -> Path:
    return config_file(
        folder,
        name,
        f"optim: {{epochs: {epochs}, batch_size: 64}}\n"
        "checkpoint: {every_rounds: 2}\n"
        "scaling: {num_workers: 2, cpus_per_worker: 1}\n"
        f"run: {{max_failures: 1, start_timeout_s: {start_timeout_s}, "
        f"storage_path: {folder / 'shared'}}}\n",
    )


def train_while_killing_a_node(cluster, name: str, epochs: int, start_timeout_s: float):
    folder, env, _ = cluster
    config = node_loss_config(folder, name, epochs, start_timeout_s)
    training = subprocess.Popen(
        [REDBLUE, "train", str(config)],
        cwd=folder,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        killed = kill_a_node_after_first_checkpoint(folder, name)
        out, err = training.communicate(timeout=600)
    finally:
        training.kill()
    return killed, training.returncode, out, err, the_only_run(env, name)


@pytest.fixture(scope="module")
def node_lost(cluster):
    """Training ``nodeloss`` with 2 workers on the 3 nodes while a worker node is killed (once
    for the module; the cluster keeps 2 nodes after): (role of the node killed, exit code,
    stdout, stderr, the MLflow run)."""
    return train_while_killing_a_node(cluster, "nodeloss", epochs=30, start_timeout_s=120)


def test_losing_a_node_resumes_on_the_spare_node_in_the_same_run(node_lost):
    """3 nodes, 2 workers: a worker node's raylet dies mid-run; the run goes on on the spare."""
    killed, code, out, err, run = node_lost
    assert code == 0, f"{killed} killed; {err[-3000:]}"
    assert "workers restarted (restart 1); resuming at round" in err, err[-6000:]
    assert "resuming at round 1\n" not in err  # it continued from a checkpoint
    assert run.info.status == "FINISHED"  # one run (finished_run finds exactly one)
    assert run.data.tags["redblue.restarts"] == "1"
    assert run.data.metrics["restarts"] == 1
    assert run.data.metrics["test_accuracy"] > 0.8
    assert "training finished" in out


@pytest.mark.usefixtures("node_lost")
def test_losing_more_nodes_than_can_be_replaced_fails_the_run_clearly(cluster):
    """2 nodes left (``node_lost``), 2 workers: another node lost leaves no room; the run
    fails, recorded."""
    killed, code, _, err, run = train_while_killing_a_node(
        cluster, "toomany", epochs=40, start_timeout_s=8
    )
    assert code == 1, f"{killed} killed; {err[-3000:]}"
    assert "the cluster cannot hold the worker group after a failure" in err
    # Ray echoes the surviving worker's own error above; the command ends with one clear line.
    assert "cannot hold the worker group" in err.strip().splitlines()[-1]
    assert run.info.status == "FAILED"
    assert "cannot hold the worker group" in run.data.tags["redblue.error"]
