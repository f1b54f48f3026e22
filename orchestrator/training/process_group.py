"""The workers' torch process group, its rendezvous store listening on the master's address only.

Ray Train's ``TorchConfig`` has rank 0 start a ``torch.distributed.TCPStore`` for the group's
rendezvous, and torch binds that store to every interface (``::``), whatever address the
workers are given: on a machine with a network, anyone who reaches it could join or disturb a
run. Here rank 0 binds the listening socket itself, to the master's address (127.0.0.1 on a
local cluster; the head worker's node address on a real one), and hands it to the store
(``master_listen_fd``); the other ranks connect as before.

The backend and its config follow Ray Train's ``TorchConfig`` for gloo and NCCL, in a module
that does not import torch: Ray Train's controller process unpickles the config and runs the
backend's hooks, and Ray's own config would have it import torch (about 2 s of CPU) before it
starts the workers, for nothing it uses. What runs in the workers is Ray Train's own
(``orchestrator.ray_internals``), imported there.
"""

from __future__ import annotations

import contextlib
import os
import socket
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlparse

import ray
from ray.exceptions import GetTimeoutError
from ray.train.backend import Backend, BackendConfig

from orchestrator import ray_internals

NCCL_ASYNC_ERRORS = "TORCH_NCCL_ASYNC_ERROR_HANDLING"
NCCL_BLOCKING_WAIT = "TORCH_NCCL_BLOCKING_WAIT"


def master_address(init_method: str) -> tuple[str, int]:
    """The (host, port) of the rendezvous Ray Train chose: ``env://`` or ``tcp://host:port``."""
    if init_method == "env://":
        return os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"])
    parsed = urlparse(init_method)
    assert parsed.hostname is not None and parsed.port is not None, init_method
    return parsed.hostname, parsed.port


def listening_socket(host: str, port: int) -> socket.socket:
    """A TCP socket listening on ``host:port`` only."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((host, port))
    listener.listen(128)
    return listener


def setup_process_group(
    backend: str, world_rank: int, world_size: int, init_method: str, timeout_s: int = 1800
) -> None:
    """Ray Train's process-group setup, with rank 0's store bound to the master's address."""
    import torch.distributed as dist

    waits = (NCCL_ASYNC_ERRORS, NCCL_BLOCKING_WAIT)
    if backend == "nccl" and not any(name in os.environ for name in waits):
        os.environ[NCCL_ASYNC_ERRORS] = "1"  # fail on a timed-out collective, as Ray Train does
    host, port = master_address(init_method)
    timeout = timedelta(seconds=timeout_s)
    listen_fd = None
    if world_rank == 0:
        listen_fd = listening_socket(host, port).detach()  # the store owns it from here
    store = dist.TCPStore(
        host,
        port,
        world_size,
        is_master=world_rank == 0,
        timeout=timeout,
        master_listen_fd=listen_fd,
    )
    dist.init_process_group(
        backend=backend, store=store, rank=world_rank, world_size=world_size, timeout=timeout
    )


def set_rendezvous(addr: str, port: int) -> None:
    os.environ["MASTER_ADDR"] = addr
    os.environ["MASTER_PORT"] = str(port)


class BoundTorchBackend(Backend):
    """Ray Train's torch backend for gloo and NCCL, setting the process group up with
    :func:`setup_process_group`."""

    share_cuda_visible_devices: bool = True

    def on_start(self, worker_group, backend_config: BackendConfig) -> None:
        assert isinstance(backend_config, BoundTorchConfig)
        ray_internals.write_checkpoint_snapshots_whole()  # in the controller, before any report
        addr, port = worker_group.execute_single(0, ray_internals.get_address_and_port)
        worker_group.execute(set_rendezvous, addr=addr, port=port)
        worker_group.execute(ray_internals.set_torch_distributed_env_vars)
        ray.get(
            [
                worker_group.execute_single_async(
                    rank,
                    setup_process_group,
                    backend=backend_config.backend,
                    world_rank=rank,
                    world_size=len(worker_group),
                    init_method="env://",
                    timeout_s=backend_config.timeout_s,
                )
                for rank in range(len(worker_group))
            ]
        )

    def on_shutdown(self, worker_group, backend_config: BackendConfig) -> None:
        futures = worker_group.execute_async(
            ray_internals.shutdown_torch, destroy_process_group=len(worker_group) > 1
        )
        with contextlib.suppress(GetTimeoutError):  # as Ray Train: the workers stop next anyway
            ray.get(futures, timeout=ray_internals.torch_shutdown_timeout_s())


@dataclass
class BoundTorchConfig(BackendConfig):
    """Ray Train's ``TorchConfig`` (gloo or NCCL, ``env://`` rendezvous), whose rendezvous store
    listens on the master's address only."""

    backend: str = "gloo"
    timeout_s: int = 1800

    @property
    def backend_cls(self):
        return BoundTorchBackend

    @property
    def train_func_context(self):
        return ray_internals.TorchDeviceContext

    @property
    def framework(self):
        return ray_internals.TORCH_FRAMEWORK

    def to_dict(self) -> dict[str, Any]:
        return {"backend": self.backend, "init_method": "env", "timeout_s": self.timeout_s}
