"""Two or more CPU processes joined in one gloo process group with DeepSpeed's CPU accelerator,
for tests that drive real DeepSpeed engines without Ray (tests/fusion_check.py,
tests/recurrent_check.py)."""

from __future__ import annotations

import os


def join(rank: int, world_size: int, port: int) -> None:
    """Join the group on 127.0.0.1:``port`` as ``rank``, one torch thread per process."""
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world_size),
        DS_ACCELERATOR="cpu",
    )
    from trainers.prebuild import use_venv_build_cache

    use_venv_build_cache()
    import torch

    from trainers.engine.deepspeed_engine import import_deepspeed

    import_deepspeed().init_distributed(dist_backend="gloo")
    torch.set_num_threads(1)


def leave() -> None:
    """Leave together, and skip the interpreter's teardown: a native thread still joinable when
    static destructors run aborts the process about one time in three on CPU ("terminate called
    without an active exception"), after the results are written."""
    import torch

    torch.distributed.barrier()
    torch.distributed.destroy_process_group()
    os._exit(0)
