"""GPU runs: NCCL, bf16 and fp16, ZeRO-2 and ZeRO-3. Skipped cleanly where no CUDA GPU is here."""

from __future__ import annotations

import json

import pytest
import torch
import torch.multiprocessing as mp

from tests import fusion_check

pytestmark = [
    pytest.mark.integration,
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


@pytest.mark.parametrize("zero_stage", [2, 3])
def test_red_blue_on_gpus_with_bf16(train, zero_stage):
    workers = max(1, min(2, torch.cuda.device_count()))
    code, summary = train(
        f"gpu-zero{zero_stage}",
        scaling={"use_gpu": True, "num_workers": workers},
        deepspeed={"zero_stage": zero_stage, "precision": "bf16"},
    )
    assert code == 0
    assert summary.metrics["test_accuracy"] >= 0.9


@pytest.mark.parametrize("zero_stage", [2, 3])
def test_a_gan_trains_two_engines_per_replica_on_gpus(train, zero_stage):
    """The generator's and discriminator's engines on CUDA (bf16, NCCL): noise, labels and rows
    on the engines' device, a served model's rows back on the CPU."""
    workers = max(1, min(2, torch.cuda.device_count()))
    code, summary = train(
        f"gpu-gan-zero{zero_stage}",
        data={"source": "penguins", "label": "species"},
        model={"kind": "gan"},
        optim={"epochs": 30, "batch_size": 32},
        scaling={"use_gpu": True, "num_workers": workers},
        deepspeed={"zero_stage": zero_stage, "precision": "bf16"},
    )
    assert code == 0
    assert 0 < summary.metrics["test_fd"] < 10 * summary.metrics["test_fd_real"]


def test_a_checkpoint_restores_the_cuda_generator(tmp_path):
    """Dropout on a GPU draws from the CUDA generator: a resumed run must get it back."""
    from trainers.engine.checkpoint import LoopState, read_state, write_state

    torch.cuda.init()
    torch.cuda.manual_seed(1)
    write_state(tmp_path, LoopState(), rank=0)
    expected = torch.rand(8, device="cuda")
    torch.cuda.manual_seed(2)
    read_state(tmp_path, rank=0)
    assert torch.equal(torch.rand(8, device="cuda"), expected)


# fp16 exists on GPUs only: its optimizer wrappers (FP16_Optimizer at ZeRO-0, the ZeRO ones above)
# keep their fp32 masters apart from the half-precision weights, as bf16's do.
GPU_SETTINGS = [(0, "fp16"), (2, "fp16"), (3, "fp16"), (2, "bf16"), (3, "bf16")]
WEIGHT_TOLERANCE = {"fp16": 2**-10, "bf16": 2**-7}
FORWARD_TOLERANCE = {"fp16": 0.02, "bf16": 0.1}


@pytest.fixture(scope="module")
def measured_on_gpu(tmp_path_factory):
    from orchestrator.environment import free_port

    out = tmp_path_factory.mktemp("fusion-gpu")
    args = (1, free_port(), str(out), GPU_SETTINGS, "cuda")
    mp.spawn(fusion_check.run, args=args, nprocs=1, join=True)
    return json.loads((out / "rank0.json").read_text())


@pytest.mark.parametrize("stage, precision", GPU_SETTINGS)
def test_fusion_is_exact_on_a_gpu(measured_on_gpu, stage, precision):
    """The claims of tests/integration/test_fusion_engines.py on a CUDA engine (NCCL)."""
    got = measured_on_gpu[fusion_check.setting_name(stage, precision)]
    assert got["red_vs_blue"] > 1e-3, got  # the replicas trained apart
    assert got["gathered_error"] <= WEIGHT_TOLERANCE[precision], got
    assert got["blue_error"] <= WEIGHT_TOLERANCE[precision], got
    assert got["master_error"] <= 1e-6, got
    assert got["forward_red_vs_blue"] == 0.0, got
    assert got["forward_vs_plain"] <= FORWARD_TOLERANCE[precision], got
    assert got["forward_moved"] > 1e-3, got
    assert got["step_from_fused"] < 0.5 * got["step_from_red"], got
