"""The recurrent families on real DeepSpeed engines, two gloo processes: rnn, lstm and a
bidirectional gru, red-blue and standard, ZeRO-2 and ZeRO-3, classifying the digit rows and
forecasting the co2 series; in bf16 a forecasting LSTM and a classifying GRU; and
strategy.clean on noisy labels under ZeRO-3 and bf16 (a GRU on sequences, an MLP on digits).
Each run learns, both ranks agree, and a run resumed from its first checkpoint ends with exactly
the metrics of the run that was not interrupted."""

from __future__ import annotations

import itertools
import json

import pytest
import torch.multiprocessing as mp

from orchestrator.environment import free_port
from tests import recurrent_check

pytestmark = pytest.mark.integration

KINDS, STRATEGIES, DATA = ("rnn", "lstm", "gru"), ("red_blue", "standard"), ("sequence", "series")


def stage(strategy: str, data: str) -> int:
    """ZeRO-2 or 3 such that every kind, strategy and data meets both stages (half the grid)."""
    return 2 if (strategy == "red_blue") == (data == "sequence") else 3


SETTINGS = [
    *((k, s, stage(s, d), d) for k, s, d in itertools.product(KINDS, STRATEGIES, DATA)),
    ("lstm", "red_blue", 3, "series-bf16"),
    ("gru", "standard", 2, "sequence-bf16"),
    ("gru", "red_blue", 3, "sequence-clean-bf16"),
    ("mlp", "red_blue", 3, "table-clean-bf16"),
]


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    out = tmp_path_factory.mktemp("recurrent")
    mp.spawn(recurrent_check.run, args=(2, free_port(), str(out), SETTINGS), nprocs=2, join=True)
    return [json.loads((out / f"rank{rank}.json").read_text()) for rank in (0, 1)]


@pytest.mark.parametrize("kind, strategy, stage, data", SETTINGS)
def test_each_kind_trains_under_zero_and_resumes_exactly(measured, kind, strategy, stage, data):
    name = f"{kind}-{strategy}-{stage}-{data}"
    first, second = measured[0][name], measured[1][name]
    assert first["rounds"] >= 3  # a checkpoint every 2 rounds: the resumed run trained on
    assert first["resumed"] == first["full"] and second == first
    metrics = first["full"]
    if "clean" in data:  # cleaning was under way at the resumed checkpoint, and found issues
        assert metrics["label_issues/count"] > 0 and metrics["label_issues/precision"] > 0.5
    if not data.startswith("series"):
        assert metrics["test_accuracy"] >= 0.25, metrics  # ten classes: chance is 0.1
    else:
        assert metrics["test_mase"] < metrics["baseline/naive_mase"], metrics
