"""``scaling.num_workers: auto``: the rule (one worker a node with all its CPUs, a GPU each with
use_gpu, one a trial for sweeps and compare) and where the config applies it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from orchestrator.config import ConfigError, validate
from orchestrator.worker_shape import Node, WorkerChoice, choose


def test_one_run_gets_one_worker_a_node_with_the_smallest_nodes_cpus():
    shape = choose([Node(2)], use_gpu=False, cpus_per_worker=None)
    assert (shape.num_workers, shape.cpus_per_worker) == (1, 2.0)
    assert shape.reason == "one worker a node (1 node), 2 CPU(s) each"
    shape = choose([Node(4), Node(2.5), Node(8), Node(0)], use_gpu=False, cpus_per_worker=None)
    assert (shape.num_workers, shape.cpus_per_worker) == (3, 2.0)  # the CPU-less head left out
    shape = choose([Node(4), Node(8)], use_gpu=False, cpus_per_worker=1.5)
    assert (shape.num_workers, shape.cpus_per_worker) == (2, 1.5)


def test_with_gpus_one_worker_a_gpu():
    shape = choose([Node(8, 4), Node(8, 4)], use_gpu=True, cpus_per_worker=None)
    assert (shape.num_workers, shape.cpus_per_worker) == (8, 1.0)
    with pytest.raises(ValueError, match="no GPU"):
        choose([Node(8)], use_gpu=True, cpus_per_worker=None)
    with pytest.raises(ValueError, match="no node with a whole CPU"):
        choose([Node(0.5)], use_gpu=False, cpus_per_worker=None)


def test_trials_get_one_worker_and_share_the_cpus_among_those_at_once():
    nodes = [Node(4), Node(4)]
    assert choose(nodes, use_gpu=False, cpus_per_worker=None, for_trials=True).cpus_per_worker == 1
    shape = choose(nodes, use_gpu=False, cpus_per_worker=None, concurrent_trials=2, for_trials=True)
    assert (shape.num_workers, shape.cpus_per_worker) == (1, 4.0)  # a trial stays on one node
    shape = choose(nodes, use_gpu=False, cpus_per_worker=None, concurrent_trials=8, for_trials=True)
    assert (shape.num_workers, shape.cpus_per_worker) == (1, 1.0)


def test_the_config_chooses_at_validation_and_keeps_what_the_user_set():
    cores = float(os.cpu_count() or 1)
    default = validate({})
    assert (default.scaling.num_workers, default.scaling.cpus_per_worker) == (1, cores)
    assert validate({"scaling": {"num_workers": 2}}).scaling.cpus_per_worker == 1.0
    assert validate({"scaling": {"num_workers": "auto", "cpus_per_worker": 0.5}}).scaling == (
        validate({"scaling": {"num_workers": 1, "cpus_per_worker": 0.5}}).scaling
    )
    chosen = WorkerChoice(nodes=lambda: [Node(2), Node(2), Node(2)])
    cfg = validate({"optim": {"batch_size": 48}}, workers=chosen)
    assert (cfg.scaling.num_workers, cfg.scaling.cpus_per_worker) == (3, 2.0)
    assert chosen.reason == "one worker a node (3 nodes), 2 CPU(s) each"
    assert cfg.with_values({"optim.lr": 0.1}).scaling == cfg.scaling  # a trial keeps the choice
    swept = validate(
        {"sweep": {"space": {"optim.lr": {"choice": [0.1, 0.2]}}, "max_concurrent": 1}},
        for_sweep=True,
    )
    assert (swept.scaling.num_workers, swept.scaling.cpus_per_worker) == (1, cores)
    with pytest.raises(ConfigError, match=r"scaling.num_workers: should be above 0, or auto"):
        validate({"scaling": {"num_workers": 0}})
    fewer = WorkerChoice(nodes=lambda: [Node(1)] * 3)  # 3 would not divide the batch of 64
    assert validate({}, workers=fewer).scaling.num_workers == 2
    assert (
        fewer.reason == "one worker a node (3 nodes, 2 of them to divide the batch), 1 CPU(s) each"
    )
    with pytest.raises(ConfigError, match="must be a multiple"):  # checked once chosen
        validate({"optim": {"batch_size": 63}, "scaling": {"num_workers": 2}})

    def unreachable() -> list[Node]:
        raise ValueError("the Ray cluster at 10.0.0.1:6379 cannot be reached")

    with pytest.raises(ConfigError, match="cannot be reached"):
        validate({}, workers=WorkerChoice(nodes=unreachable))


def test_validate_prints_the_choice():
    done = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "validate", "configs/digits.yaml"]
        + ["--set", "scaling.num_workers=auto", "--set", "scaling.cpus_per_worker=auto"],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert done.returncode == 0, done.stderr
    cores = os.cpu_count() or 1
    assert f"workers: 1, one worker a node (1 node), {cores} CPU(s) each" in done.stderr
