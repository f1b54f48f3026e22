"""A DeepSpeed engine built from our config: the ``Engine`` the Ray Train workers train with.
The DeepSpeed JSON config is built here, in one function.

Its checkpoint files are read back as data: DeepSpeed's torch checkpoint engine unpickles them
(``weights_only=False``), and they live in ``run.storage_path``, which on a shared bucket or
volume other jobs can write, so a planted file would run code in every worker that resumes.
Here they load with ``weights_only=True``, which admits tensors, plain containers and the three
DeepSpeed types ZeRO's optimizer states hold (``CHECKPOINT_TYPES``); any other file is refused,
naming it."""

from __future__ import annotations

import contextlib
import io
import logging
import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn

from trainers.config import DeepSpeedConfig, OptimConfig
from trainers.engine.base import build_optimizer
from trainers.engine.clock import RunClock
from trainers.engine.masters import Masters, copy_masters_down, masters_of
from trainers.engine.schedules import apply_peak_values, build_scheduler
from trainers.log_level import library_log_level

# Besides tensors and plain containers, what DeepSpeed's optimizer-state files hold (every ZeRO
# stage, fp32 and bf16, CPU offload), as torch.serialization.get_unsafe_globals_in_checkpoint lists.
CHECKPOINT_TYPES = (
    "deepspeed.runtime.fp16.loss_scaler.LossScaler",
    "deepspeed.runtime.zero.config.ZeroStageEnum",
    "deepspeed.utils.tensor_fragment.fragment_address",
)


class UnsafeCheckpointError(RuntimeError):
    """A checkpoint file holds more than tensors and plain data: it is not loaded."""


def load_checkpoint_file(path: str, map_location: Any = None) -> Any:
    """One DeepSpeed checkpoint file, loaded with ``weights_only=True`` (plus CHECKPOINT_TYPES)."""
    import importlib
    import pickle

    types = []
    for name in CHECKPOINT_TYPES:
        module, _, attribute = name.rpartition(".")
        types.append(getattr(importlib.import_module(module), attribute))
    with torch.serialization.safe_globals(types):
        try:
            return torch.load(path, map_location=map_location, weights_only=True)
        except pickle.UnpicklingError as exc:
            reason = str(exc).strip().splitlines()[0]
            raise UnsafeCheckpointError(
                f"refusing checkpoint file {path}: it holds more than tensors and plain data, "
                f"so it was not written by this run's engine ({reason})"
            ) from None


def import_deepspeed() -> Any:
    """``import deepspeed`` without its optional MLflow import (about 1.6 s of worker start-up).

    DeepSpeed's autotuner, which we never use, tries ``import mlflow`` and copes when that fails;
    a ``None`` entry in ``sys.modules`` makes it fail fast. The entry is removed afterwards, so a
    later ``import mlflow`` in the same process works normally.
    """
    if "deepspeed" in sys.modules or "mlflow" in sys.modules:
        import deepspeed

        return deepspeed
    sys.modules["mlflow"] = None  # type: ignore[assignment]
    try:
        import deepspeed
    finally:
        del sys.modules["mlflow"]
    return deepspeed


def clips_locally(ds: DeepSpeedConfig, optim: OptimConfig) -> bool:
    """Whether the engine clips gradients itself rather than DeepSpeed: under ZeRO-0 in fp32
    every worker holds the whole averaged gradient, so its norm needs no collective, while
    DeepSpeed's clipping all-reduces the norm once more every step (for mixture-of-experts
    models), one more round trip per step than DDP."""
    return optim.grad_clip > 0 and ds.zero_stage == 0 and ds.precision == "fp32"


def deepspeed_config(ds: DeepSpeedConfig, optim: OptimConfig, micro_batch: int) -> dict[str, Any]:
    """The DeepSpeed JSON config, built from our config in this one place; ``micro_batch`` is
    the plan's (``trainers.loop.rounds.micro_batch_size``)."""
    zero: dict[str, Any] = {"stage": ds.zero_stage}
    if ds.offload == "cpu":
        zero["offload_optimizer"] = {"device": "cpu"}
    return {
        "train_batch_size": optim.batch_size,
        "train_micro_batch_size_per_gpu": micro_batch,
        "gradient_accumulation_steps": ds.grad_accum_steps,
        "gradient_clipping": 0.0 if clips_locally(ds, optim) else optim.grad_clip,
        "zero_optimization": zero,
        "bf16": {"enabled": ds.precision == "bf16"},
        "fp16": {"enabled": ds.precision == "fp16"},
        # We hand DeepSpeed torch optimizers: no CPU-Adam op to JIT-compile at start-up.
        "zero_allow_untested_optimizer": True,
        "zero_force_ds_cpu_optimizer": False,
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }


class DeepSpeedEngine:
    """A model wrapped in a DeepSpeed engine with its own torch optimizer and lr schedule."""

    def __init__(
        self,
        model: nn.Module,
        *,
        ds: DeepSpeedConfig,
        optim: OptimConfig,
        micro_batch: int,
        clock: RunClock,
    ) -> None:
        deepspeed = import_deepspeed()
        ds_logger = logging.getLogger("DeepSpeed")
        ds_logger.setLevel(library_log_level())
        for handler in ds_logger.handlers:  # its handler filters by level too
            handler.setLevel(library_log_level())
        optimizer = build_optimizer(model.parameters(), optim, eager=ds.zero_stage == 0)
        # DeepSpeed prints "... shm_comm_op built successfully" at every load of its prebuilt op.
        with contextlib.redirect_stdout(io.StringIO()):
            self.engine, _, _, _ = deepspeed.initialize(
                model=model,
                optimizer=optimizer,
                lr_scheduler=build_scheduler(optimizer, optim, clock),
                config=deepspeed_config(ds, optim, micro_batch),
            )
        if self.engine.zero_optimization_stage() == 0 and self.engine.dp_world_size == 1:
            # One worker: its gradients are the average already. DeepSpeed would still copy them
            # into buckets, all-reduce over a group of one and copy them back (9% of a small
            # model's step in a py-spy profile).
            self.engine.enable_backward_allreduce = False
        self.module = self.engine.module
        self.optim = optim
        self.clip_locally = clips_locally(ds, optim)
        self.device = self.engine.device
        if type(self.engine.checkpoint_engine).__name__ == "TorchCheckpointEngine":
            self.engine.checkpoint_engine.load = load_checkpoint_file  # data only; see above

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """fp32 features in; the model normalizes them, then casts to its own precision."""
        return self.engine(features.to(device=self.device))

    def backward(self, loss: torch.Tensor) -> None:
        self.engine.backward(loss)

    def step(self) -> None:
        if self.clip_locally and self.engine.is_gradient_accumulation_boundary():
            nn.utils.clip_grad_norm_(self.module.parameters(), self.optim.grad_clip)
        self.engine.step()

    def lr(self) -> float:
        return float(self.engine.get_lr()[0])

    def masters(self) -> Masters:
        """The fp32 weights this worker's optimizer steps on (see ``trainers.engine.masters``)."""
        return masters_of(self.engine.optimizer, list(self.module.parameters()))

    def masters_changed(self) -> None:
        """Copy the master weights down into the model (a collective call when partitioned)."""
        copy_masters_down(self.engine.optimizer)

    def full_state_dict(self) -> dict[str, torch.Tensor]:
        """Every tensor of the model, gathered (a collective call under ZeRO-3)."""
        deepspeed = import_deepspeed()
        params = list(self.module.parameters())
        with deepspeed.zero.GatheredParameters(params, modifier_rank=None):
            return {
                k: v.detach().float().cpu().clone() for k, v in self.module.state_dict().items()
            }

    def save(self, directory: Path, tag: str) -> None:
        self.engine.save_checkpoint(str(directory), tag=tag, save_latest=False)

    def load(self, directory: Path, tag: str) -> None:
        path, _ = self.engine.load_checkpoint(
            str(directory), tag=tag, load_optimizer_states=True, load_lr_scheduler_states=True
        )
        if path is None:
            raise FileNotFoundError(f"no DeepSpeed checkpoint {tag!r} in {directory}")
        apply_peak_values(self.engine.lr_scheduler, self.optim.lr, self.optim.weight_decay)
