"""The workers' torch process group, its rendezvous store listening on the master's address only.

Ray Train's ``TorchConfig`` has rank 0 start a ``torch.distributed.TCPStore`` for the group's
rendezvous, and torch binds that store to every interface (``::``), whatever address the
workers are given: on a machine with a network, anyone who reaches it could join or disturb a
run. Here rank 0 binds the listening socket itself, to the master's address (127.0.0.1 on a
local cluster; the head worker's node address on a real one), and hands it to the store
(``master_listen_fd``); the other ranks connect as before. Everything else is Ray Train's own
setup (``ray_internals.TorchBackend``).
"""

from __future__ import annotations

import os
import socket
from datetime import timedelta
from urllib.parse import urlparse

from ray.train.torch import TorchConfig

from orchestrator.ray_internals import TorchBackend, torch_backend_setup

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


class BoundTorchBackend(TorchBackend):
    """Ray Train's torch backend, setting the process group up with :func:`setup_process_group`."""

    def on_start(self, worker_group, backend_config) -> None:
        with torch_backend_setup(setup_process_group):
            super().on_start(worker_group, backend_config)


class BoundTorchConfig(TorchConfig):
    """``TorchConfig`` whose rendezvous store listens on the master's address only."""

    @property
    def backend_cls(self):
        return BoundTorchBackend
