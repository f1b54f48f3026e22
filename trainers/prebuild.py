"""Build DeepSpeed's CPU communication op once, at install, so no run pays its JIT compile.

``python -m trainers.prebuild`` (run by ``make install``); the result is cached in the virtual
environment (``<venv>/torch_extensions``, or ``$TORCH_EXTENSIONS_DIR``) and loads in a second.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path


def main() -> None:
    os.environ.setdefault("DS_ACCELERATOR", "cpu")
    # The same folder that orchestrator.environment.use_venv_extension_cache gives the workers.
    os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(Path(sys.prefix) / "torch_extensions"))
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
