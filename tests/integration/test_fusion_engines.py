"""Fusion is exact on real DeepSpeed engines: ZeRO 0-3 x fp32 and bf16, and with the optimizer
state offloaded to CPU memory (``deepspeed.offload: cpu``), in two gloo processes.

After ``fuse_into_both`` with alpha = 0.3, on every rank:
- the gathered weights of both replicas equal alpha * red + (1 - alpha) * blue of the gathered
  weights before (within the precision's rounding);
- the optimizer's fp32 master weights hold exactly the fused fp32 masters;
- the next forward pass uses the fused weights (red and blue agree with each other and with a
  plain fp32 model given the gathered weights), and so does the next optimizer step;
- every rank holds the same weights.
"""

from __future__ import annotations

import json

import pytest
import torch.multiprocessing as mp

from orchestrator.environment import free_port
from tests import fusion_check

pytestmark = pytest.mark.integration

SETTINGS = [(stage, precision) for precision in ("fp32", "bf16") for stage in (0, 1, 2, 3)]
SETTINGS += [(2, "fp32", "cpu"), (3, "fp32", "cpu"), (1, "bf16", "cpu"), (3, "bf16", "cpu")]
# Relative error of the gathered weights: bf16 keeps 8 bits of mantissa, and the fused masters
# are rounded to it once; fp32 sees only the rounding of the fusion itself.
WEIGHT_TOLERANCE = {"fp32": 1e-6, "bf16": 2**-7}
FORWARD_TOLERANCE = {"fp32": 1e-5, "bf16": 0.1}


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    out = tmp_path_factory.mktemp("fusion")
    mp.spawn(fusion_check.run, args=(2, free_port(), str(out), SETTINGS), nprocs=2, join=True)
    return [json.loads((out / f"rank{rank}.json").read_text()) for rank in (0, 1)]


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: fusion_check.setting_name(*s))
def test_fusion_is_exact(measured, setting):
    precision = setting[1]
    name = fusion_check.setting_name(*setting)
    for rank, results in enumerate(measured):
        got = results[name]
        assert got["red_vs_blue"] > 1e-3, (rank, got)  # the replicas trained apart
        assert got["gathered_error"] <= WEIGHT_TOLERANCE[precision], (rank, got)
        assert got["blue_error"] <= WEIGHT_TOLERANCE[precision], (rank, got)
        assert got["master_error"] <= 1e-6, (rank, got)
        assert got["forward_red_vs_blue"] == 0.0, (rank, got)
        assert got["forward_vs_plain"] <= FORWARD_TOLERANCE[precision], (rank, got)
        assert got["forward_moved"] > 1e-3, (rank, got)
        assert got["step_from_fused"] < 0.5 * got["step_from_red"], (rank, got)
        # The checkpoint loads back as data; planted pickles are refused and never run.
        assert got["loaded_error"] == 0.0, (rank, got)
        assert got["planted_refused"] == 1.0 and got["payload_ran"] == 0.0, (rank, got)
    assert measured[0][name]["weights_checksum"] == measured[1][name]["weights_checksum"]
