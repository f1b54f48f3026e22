"""Processes joined in one process group, for tests that drive real DeepSpeed engines without Ray
(tests/fusion_check.py, tests/recurrent_check.py): CPU processes in a gloo group with DeepSpeed's
CPU accelerator, or one process per GPU in an NCCL group with its CUDA accelerator."""

from __future__ import annotations

import os


def join(rank: int, world_size: int, port: int, accelerator: str = "cpu") -> None:
    """Join the group on 127.0.0.1:``port`` as ``rank``, one torch thread per process (on a
    ``cuda`` accelerator: NCCL, on GPU ``rank``)."""
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world_size),
        DS_ACCELERATOR=accelerator,
    )
    from trainers.prebuild import use_venv_build_cache

    use_venv_build_cache()
    import torch

    from trainers.engine.deepspeed_engine import import_deepspeed

    if accelerator == "cuda":
        torch.cuda.set_device(rank)
    import_deepspeed().init_distributed(dist_backend="nccl" if accelerator == "cuda" else "gloo")
    torch.set_num_threads(1)


def leave() -> None:
    """Leave together, and skip the interpreter's teardown: a native thread still joinable when
    static destructors run aborts the process about one time in three on CPU ("terminate called
    without an active exception"), after the results are written."""
    import torch

    torch.distributed.barrier()
    torch.distributed.destroy_process_group()
    os._exit(0)
