"""Build DeepSpeed's CPU communication op once, at install, so no run pays its JIT compile.

``python -m trainers.prebuild`` (run by ``make install``); the result is cached under
``~/.cache/torch_extensions`` (or ``$TORCH_EXTENSIONS_DIR``) and loaded in about a second.
"""

from __future__ import annotations

import os
import time


def main() -> None:
    os.environ.setdefault("DS_ACCELERATOR", "cpu")
    started = time.perf_counter()
    from deepspeed.accelerator import get_accelerator
    from deepspeed.comm.torch import build_shm_op

    if get_accelerator().device_name() != "cpu":
        print("prebuild: a GPU accelerator is in use; nothing to prebuild")
        return
    op = build_shm_op()
    state = "ready" if op is not None else "not supported on this CPU (DeepSpeed falls back)"
    print(f"prebuild: DeepSpeed shm comm op {state} ({time.perf_counter() - started:.1f} s)")


if __name__ == "__main__":
    main()
