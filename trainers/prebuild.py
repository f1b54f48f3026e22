"""Build DeepSpeed's CPU communication op once, at install, so no run pays its JIT compile.

``python -m trainers.prebuild`` (run by ``make install``); the result is cached in the virtual
environment (``<venv>/torch_extensions``, or ``$TORCH_EXTENSIONS_DIR``) and loads in a second.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path


def use_venv_build_cache() -> None:
    """Build and load DeepSpeed's JIT ops in this virtual environment, with its own ninja.

    The ops are cached in ``<venv>/torch_extensions``: one shared ~/.cache/torch_extensions was
    rebuilt whenever another installation of DeepSpeed (another clone's .venv) built the same op
    there. This environment's ninja goes first on PATH: ninja 1.12 changed the hash it records for
    each build command, so a process that found the system's older ninja first (a shell without
    the venv activated) rebuilt the op (about 30 s, before the first step), and the next process
    with the venv's ninja rebuilt it again.
    """
    os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(Path(sys.prefix) / "torch_extensions"))
    venv_bin = str(Path(sys.executable).parent)
    path = os.environ.get("PATH", "")
    if path.split(os.pathsep)[0] != venv_bin:
        os.environ["PATH"] = os.pathsep.join([venv_bin, path]) if path else venv_bin


def main() -> None:
    os.environ.setdefault("DS_ACCELERATOR", "cpu")
    use_venv_build_cache()  # the same cache and ninja as the workers
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
