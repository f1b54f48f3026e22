"""Fusion on real DeepSpeed engines in two processes (gloo), for every ZeRO stage and precision.

``run(rank, world_size, port, out_dir, settings)`` is the body of each process (started with
torch.multiprocessing.spawn by tests/integration/test_fusion_engines.py); each process writes
what it measured to ``out_dir/rank{N}.json`` and the test checks it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from tests import gloo_ranks

if TYPE_CHECKING:
    import torch

ALPHA = 0.3


def _gap(value: torch.Tensor, expected: torch.Tensor) -> float:
    """The largest difference, where a NaN matching a NaN counts as none. Under ZeRO-3 the last
    rank's partition ends in alignment padding, and with CPU offload its flat buffer is
    ``torch.empty`` (deepspeed/runtime/zero/stage3.py), so the padding may hold a NaN, which
    fusion carries along like any element. The weights themselves are compared gathered,
    without padding."""
    import torch

    both = torch.isnan(value) & torch.isnan(expected)
    return float(torch.where(both, 0.0, (value - expected).abs()).max())


class Payload:
    """A pickle that runs a command when it is loaded."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def run(
    rank: int, world_size: int, port: int, out_dir: str, settings: list, accelerator: str = "cpu"
) -> None:
    gloo_ranks.join(rank, world_size, port, accelerator)
    results = {}
    for setting in settings:
        stage, precision, offload = (*setting, "none")[:3]
        name = setting_name(*setting)
        results[name] = check(stage, precision, offload, Path(out_dir, name))
    Path(out_dir, f"rank{rank}.json").write_text(json.dumps(results))
    gloo_ranks.leave()


def setting_name(stage: int, precision: str, offload: str = "none") -> str:
    return f"zero{stage}-{precision}" + ("" if offload == "none" else f"-offload-{offload}")


def check(stage: int, precision: str, offload: str, folder: Path) -> dict[str, float]:
    """Train red and blue apart, fuse them, and measure how far each claim is from holding; then
    save red's checkpoint to ``folder``, load it into blue (as data only), plant a pickle payload
    in every file of it, and try again."""
    import torch

    from trainers.config import DeepSpeedConfig, OptimConfig
    from trainers.engine.clock import RunClock
    from trainers.engine.deepspeed_engine import DeepSpeedEngine, UnsafeCheckpointError
    from trainers.engine.fusion import fuse_into_both
    from trainers.models import build_model
    from trainers.spec import ModelSpec

    spec = ModelSpec("mlp", "classification", 8, 3, {"hidden": [16, 16]}, classes=[0, 1, 2])
    optim = OptimConfig(lr=0.01, batch_size=8)
    ds = DeepSpeedConfig(zero_stage=stage, precision=precision, offload=offload)
    world_size = torch.distributed.get_world_size()

    def replica() -> DeepSpeedEngine:
        torch.manual_seed(0)  # the same initialization for both, as in the loop
        return DeepSpeedEngine(
            build_model(spec),
            ds=ds,
            optim=optim,
            micro_batch=8 // world_size,
            clock=RunClock(2, 1, 10),
        )

    def train(rep: DeepSpeedEngine, seed: int, steps: int) -> None:
        generator = torch.Generator().manual_seed(seed)
        for _ in range(steps):
            features = torch.randn(4, 8, generator=generator)
            labels = torch.randint(0, 3, (4,), generator=generator)
            outputs = rep.forward(features).float()
            loss = torch.nn.functional.cross_entropy(outputs, labels.to(outputs.device))
            rep.backward(loss)
            rep.step()

    def gathered(rep: DeepSpeedEngine) -> torch.Tensor:
        state = rep.full_state_dict()
        return torch.cat([state[k].flatten() for k in sorted(state) if k.startswith("net.")])

    def masters(rep: DeepSpeedEngine) -> list[torch.Tensor]:
        return [t.clone() for t in rep.masters().tensors]

    red, blue = replica(), replica()
    train(red, seed=1, steps=5)
    train(blue, seed=2, steps=5)
    red_before, blue_before = gathered(red), gathered(blue)
    red_masters, blue_masters = masters(red), masters(blue)
    probe = torch.randn(16, 8, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        red_out_before = red.forward(probe).float().cpu()

    fuse_into_both({"model": red}, {"model": blue}, ALPHA)
    expected = ALPHA * red_before + (1 - ALPHA) * blue_before
    fused_red, fused_blue = gathered(red), gathered(blue)
    pairs = zip(red_masters, blue_masters, strict=True)
    expected_masters = [ALPHA * r + (1 - ALPHA) * b for r, b in pairs]
    plain = build_model(spec)
    plain.load_state_dict(red.full_state_dict())
    with torch.no_grad():
        red_out, blue_out = red.forward(probe).float().cpu(), blue.forward(probe).float().cpu()
        plain_out = plain(probe)
    fused_masters = zip(red.masters().tensors, expected_masters, strict=True)
    master_error = max(_gap(m, e) for m, e in fused_masters)
    train(red, seed=4, steps=1)
    after_step = gathered(red)
    scale = float(red_before.abs().max())
    red.save(folder, "t")
    torch.distributed.barrier()
    blue.load(folder, "t")
    loaded_error = float((gathered(blue) - after_step).abs().max())
    torch.distributed.barrier()
    marker = folder / "payload-ran"
    if torch.distributed.get_rank() == 0:
        for path in (folder / "t").glob("*.pt"):
            torch.save(Payload(marker), path)
    torch.distributed.barrier()
    try:
        blue.load(folder, "t")
        refused = ""
    except UnsafeCheckpointError as exc:
        refused = str(exc)
    return {
        "loaded_error": loaded_error,
        "planted_refused": float("refusing checkpoint file" in refused),
        "payload_ran": float(marker.exists()),
        "red_vs_blue": float((red_before - blue_before).abs().max()) / scale,
        "gathered_error": float((fused_red - expected).abs().max()) / scale,
        "blue_error": float((fused_blue - expected).abs().max()) / scale,
        "master_error": master_error,
        "forward_red_vs_blue": float((red_out - blue_out).abs().max()),
        "forward_vs_plain": float((red_out - plain_out).abs().max()),
        "forward_moved": float((red_out - red_out_before).abs().max()),
        "step_from_fused": float((after_step - fused_red).norm()),
        "step_from_red": float((after_step - red_before).norm()),
        "weights_checksum": float(fused_red.double().sum()),
    }
