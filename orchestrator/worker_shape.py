"""``scaling.num_workers: auto``: the worker group's shape (workers x CPUs each) chosen from the
nodes the run will use.

The rule, for one training run: one worker per node (per GPU with ``scaling.use_gpu``), each
with all of its node's CPUs as torch threads (the smallest node's count), unless
``scaling.cpus_per_worker`` is set. Fewer, wider workers all-reduce less: on the 2-core
development machine one 2-thread worker trains the demo MLP 2.6 times as fast as two
1-thread workers, whose every step waits on a gloo all-reduce (docs/benchmarks.md). For a sweep
or ``compare`` every trial gets one worker, and the CPUs are shared among the trials that run at
once (``sweep.max_concurrent``; without it one CPU a trial, so that as many trials run at once
as there are CPUs): trials side by side need no communication at all.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from orchestrator.run_sections import AUTO, ScalingSection


@dataclass(frozen=True)
class Node:
    cpus: float
    gpus: float = 0.0


@dataclass(frozen=True)
class Shape:
    num_workers: int
    cpus_per_worker: float
    reason: str


def local_nodes() -> list[Node]:
    """This machine, as the local Ray that a command starts here sees it."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        gpus = len([d for d in visible.split(",") if d.strip() not in ("", "-1")])
    else:
        folder = Path("/proc/driver/nvidia/gpus")
        gpus = len(list(folder.iterdir())) if folder.is_dir() else 0
    return [Node(float(os.cpu_count() or 1), float(gpus))]


def any_cluster() -> list[Node]:
    """One node of one CPU and one GPU: one worker, which every cluster holds (a check made
    before the cluster's own nodes are known)."""
    return [Node(1.0, 1.0)]


def cluster_nodes() -> list[Node]:
    """The alive nodes of the Ray cluster this process has joined."""
    import ray

    return [
        Node(node["Resources"].get("CPU", 0.0), node["Resources"].get("GPU", 0.0))
        for node in ray.nodes()
        if node.get("Alive")
    ]


def choose(
    nodes: list[Node],
    *,
    use_gpu: bool,
    cpus_per_worker: float | None,
    concurrent_trials: int | None = None,
    for_trials: bool = False,
    batch_shards: int = 0,
) -> Shape:
    """The shape for ``nodes``. ``cpus_per_worker``: the user's, when set. ``for_trials``: a
    sweep's or compare's trials, ``concurrent_trials`` of them at once when set. With
    ``batch_shards`` (the global batch over the accumulation steps), as many workers as divide
    it."""
    with_cpus = [n for n in nodes if n.cpus >= 1]
    if not with_cpus:
        raise ValueError("scaling.num_workers auto: the cluster has no node with a whole CPU")
    if for_trials:
        total = sum(math.floor(n.cpus) for n in with_cpus)
        share = max(1, total // concurrent_trials) if concurrent_trials else 1
        cpus = cpus_per_worker or float(min(share, max(math.floor(n.cpus) for n in with_cpus)))
        return Shape(1, cpus, f"one worker a trial, {cpus:g} CPU(s) each")
    if use_gpu:
        gpus = int(sum(math.floor(n.gpus) for n in nodes))
        if gpus == 0:
            raise ValueError("scaling.use_gpu is true but the cluster has no GPU")
        workers = _dividing(gpus, batch_shards)
        fit = f", {workers} of them to divide the batch" if workers < gpus else ""
        return Shape(workers, cpus_per_worker or 1.0, f"one worker a GPU ({gpus} GPUs{fit})")
    cpus = cpus_per_worker or float(min(math.floor(n.cpus) for n in with_cpus))
    nodes_text = "1 node" if len(with_cpus) == 1 else f"{len(with_cpus)} nodes"
    workers = _dividing(len(with_cpus), batch_shards)
    fit = f", {workers} of them to divide the batch" if workers < len(with_cpus) else ""
    return Shape(workers, cpus, f"one worker a node ({nodes_text}{fit}), {cpus:g} CPU(s) each")


def _dividing(most: int, batch_shards: int) -> int:
    """The most workers, up to ``most``, that divide ``batch_shards`` (any, when it is 0)."""
    return next(w for w in range(most, 0, -1) if not batch_shards or batch_shards % w == 0)


def settle(
    scaling: ScalingSection, max_concurrent: int | None, batch_shards: int, choice: WorkerChoice
) -> None:
    """Choose ``scaling.num_workers`` and ``scaling.cpus_per_worker`` where they are auto, in
    place (``choice.nodes`` is asked only for ``num_workers``); ``choice.reason`` is set to
    what was chosen and why."""
    if scaling.num_workers != AUTO:
        if scaling.cpus_per_worker == AUTO:  # the workers set, their CPUs not: one each
            scaling.cpus_per_worker = 1.0
        return
    shape = choose(
        choice.nodes(),
        use_gpu=scaling.use_gpu,
        cpus_per_worker=scaling.cpus_per_worker or None,
        concurrent_trials=max_concurrent,
        for_trials=choice.for_trials,
        batch_shards=batch_shards,
    )
    scaling.num_workers = shape.num_workers
    scaling.cpus_per_worker = scaling.cpus_per_worker or shape.cpus_per_worker
    choice.reason = shape.reason


@dataclass
class WorkerChoice:
    """How ``load_config`` chooses auto workers: for ``nodes`` (this machine by default), for one
    run or for trials; ``reason`` is set to what was chosen and why. ``cluster``: the nodes of
    the cluster the command will run on, to choose for once everything else has been checked
    (joining a cluster is not done for a config that would be refused)."""

    for_trials: bool = False
    nodes: Callable[[], list[Node]] = local_nodes
    reason: str | None = None
    cluster: Callable[[], list[Node]] | None = None


def worker_choice(address: str | None, for_trials: bool, may_connect: bool) -> WorkerChoice:
    """The choice for a command: for the nodes of the cluster at ``address`` (or
    ``RAY_ADDRESS``), when there is one and ``may_connect`` (:func:`any_cluster` until then);
    else for this machine's."""
    address = address or os.environ.get("RAY_ADDRESS")
    if not (address and may_connect):
        return WorkerChoice(for_trials)

    def joined_cluster() -> list[Node]:
        from orchestrator.environment import connect_ray

        try:
            connect_ray(address, 0.0)
        except Exception as exc:
            raise ValueError(
                f"num_workers auto needs the cluster's nodes, and the Ray cluster at {address} "
                f"cannot be reached: {exc}"
            ) from None
        return cluster_nodes()

    return WorkerChoice(for_trials, any_cluster, cluster=joined_cluster)
