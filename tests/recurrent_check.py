"""The recurrent families on real DeepSpeed engines in two processes (gloo): every kind (the
GRU bidirectional), both strategies, ZeRO-2 and ZeRO-3, on sequences and on a series; and
``strategy.clean`` on noisy labels (a GRU on sequences, an MLP on a table) under ZeRO-3 and bf16.
Each run is checkpointed, resumed from its first checkpoint, and must end with exactly the same
metrics.

``run(rank, world_size, port, out_dir, settings)`` is the body of each process (started with
torch.multiprocessing.spawn by tests/integration/test_recurrent_engines.py); each process
writes what it measured to ``out_dir/rank{N}.json``. The loop, engines and checkpoints are the
ones a Ray Train worker runs (``orchestrator.training.launch.train_worker``); the checkpoint
folders of both ranks are merged into one, as Ray Train does.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from tests import gloo_ranks

DATA: dict[str, dict[str, Any]] = {
    "sequence": {
        "data": {"kind": "sequence", "source": "digits_rows", "train_fraction": 0.2},
        "optim": {"epochs": 3, "lr": 0.01, "batch_size": 32},
    },
    "series": {
        "data": {"kind": "series", "source": "co2", "window": 24, "horizon": 12, "season": 12},
        "strategy": {"val_fraction": 0.15},
        "optim": {"epochs": 5, "lr": 0.005, "batch_size": 32},
    },
}
DATA["series-bf16"] = {**DATA["series"], "deepspeed": {"precision": "bf16"}}
DATA["sequence-bf16"] = {**DATA["sequence"], "deepspeed": {"precision": "bf16"}}
# strategy.clean on noisy labels: flags, pruned rows and cross-predictions in the checkpoint.
CLEAN = {"strategy": {"clean": "prune", "clean_start": 0.2}, "deepspeed": {"precision": "bf16"}}
DATA["sequence-clean-bf16"] = {
    **DATA["sequence"],
    **CLEAN,
    "data": {**DATA["sequence"]["data"], "label_noise": 0.3},
}
DATA["table-clean-bf16"] = {
    **CLEAN,
    "strategy": {"clean": "prune", "clean_start": 0.05},  # under way at the first checkpoint
    "data": {"label_noise": 0.3},
    "optim": {"epochs": 4, "lr": 0.01, "batch_size": 32},
}
# The GRU reads both ways: its two directions' last states feed the head.
MODELS: dict[str, dict[str, Any]] = {
    "rnn": {"kind": "rnn", "hidden": 16},
    "lstm": {"kind": "lstm", "hidden": 16},
    "gru": {"kind": "gru", "hidden": 16, "bidirectional": True},
    "mlp": {"kind": "mlp", "hidden": [32]},
}


def run(
    rank: int,
    world_size: int,
    port: int,
    out_dir: str,
    settings: list,
    tables: tuple[dict, dict] | None = None,
) -> None:
    """``settings``: (model, strategy, ZeRO stage, data) each, the model and data named in
    ``tables`` (``(DATA, MODELS)``, this module's by default)."""
    gloo_ranks.join(rank, world_size, port)
    data, models = tables or (DATA, MODELS)
    results = {
        "-".join(map(str, setting)): check(*setting, Path(out_dir), rank, data, models)
        for setting in settings
    }
    Path(out_dir, f"rank{rank}.json").write_text(json.dumps(results))
    gloo_ranks.leave()


def check(
    kind: str, strategy: str, stage: int, data: str, out: Path, rank: int, datas: dict, models: dict
) -> dict:
    """Train to the end, then again from the first checkpoint; both runs' final metrics."""
    import torch

    from orchestrator.config import RedblueConfig
    from trainers.engine.deepspeed_engine import DeepSpeedEngine
    from trainers.loop.plan import plan_run
    from trainers.loop.trainer import Trainer, build_replicas

    sections = datas[data]
    cfg = RedblueConfig.model_validate(
        {
            **sections,
            "model": models[kind],
            "strategy": {**sections.get("strategy", {}), "kind": strategy, "phase_steps": 4},
            "deepspeed": {**sections.get("deepspeed", {}), "zero_stage": stage},
            "scaling": {"num_workers": 2},
            "checkpoint": {"every_rounds": 2},
        }
    )
    plan = plan_run(cfg)
    saved = out / f"{kind}-{strategy}-{stage}-{data}"

    def trainer(report) -> Trainer:
        def make(model, name, clock, optim):
            loop = plan.loop
            return DeepSpeedEngine(
                model,
                ds=loop.deepspeed,
                optim=optim,
                micro_batch=loop.micro_batch,
                clock=clock,
            )

        return Trainer(plan, build_replicas(plan, make), report)

    checkpoints: list[Path] = []

    def keep_first(metrics: dict[str, float], checkpoint: Path | None) -> None:
        if checkpoint is not None and not checkpoints:  # merged with the other rank's files
            shutil.copytree(checkpoint, saved, dirs_exist_ok=True)
            checkpoints.append(saved)

    def ignore(metrics: dict[str, float], checkpoint: Path | None) -> None:
        pass

    full = trainer(keep_first).run()
    torch.distributed.barrier()  # both ranks' files are in place
    resumed = trainer(ignore)
    torch.manual_seed(12345)
    resumed.restore(saved)
    again = resumed.run()
    return {
        "full": without_timing(full.metrics),
        "resumed": without_timing(again.metrics),
        "rounds": full.rounds_run,
    }


def without_timing(metrics: dict[str, float]) -> dict[str, float]:
    return {key: value for key, value in metrics.items() if key != "train_seconds"}
