"""GPU runs: NCCL, bf16, ZeRO-2 and ZeRO-3. Skipped cleanly where no CUDA GPU is present."""

from __future__ import annotations

import pytest
import torch

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
