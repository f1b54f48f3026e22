"""``redblue validate``: what a config would run, worked out without running it (no Ray).

The config as loaded, the data read and split (the sizes of T, V, R and B), the task, the model's
parameter count (counted on torch's meta device), the rounds and their optimizer steps, the
DeepSpeed config the engines would get, and a sweep's space. A table too large for memory is
only listed here: its rounds are planned once Ray reads it.
"""

from __future__ import annotations

from typing import Any

from orchestrator.config import RedblueConfig


def summary(cfg: RedblueConfig, plan, for_sweep: bool) -> dict[str, Any]:
    """What ``cfg`` (and its ``plan``, a ``RunPlan`` or a pending stream) would run."""
    from trainers.loop.plan import RunPlan

    found: dict[str, Any] = {
        "name": cfg.name,
        "strategy": cfg.strategy.kind,
        "model": cfg.model.model_dump()["kind"],
        "workers": cfg.scaling.num_workers,
        "cpus_per_worker": cfg.scaling.cpus_per_worker,
    }
    if isinstance(plan, RunPlan):
        from trainers.engine.deepspeed_engine import deepspeed_config
        from trainers.loop.zero_stage import resolve_zero_stage
        from trainers.models import parameters_in

        plan, why = resolve_zero_stage(plan, cfg.model.model_dump(), cfg.scaling.num_workers)
        split = plan.split
        found.update(
            task=plan.spec.task,
            rows={
                "train": len(split.red) + len(split.blue),
                "red": len(split.red),
                "blue": len(split.blue),
                "val": len(split.val),
                "test": len(split.test),
            },
            parameters=parameters_in(plan.spec),
            rounds=plan.rounds.num_rounds,
            steps_per_round=plan.rounds.steps_per_replica,
            micro_batch=plan.loop.micro_batch,
            deepspeed=deepspeed_config(plan.loop.deepspeed, plan.loop.optim, plan.loop.micro_batch),
            zero_stage=f"{plan.loop.deepspeed.zero_stage} ({why})",
        )
    else:
        found["streamed"] = "rounds and model size are planned once Ray reads the table"
    if for_sweep:
        found["sweep"] = {
            "metric": f"{cfg.sweep.metric} ({cfg.sweep.mode})",
            "samples": cfg.sweep.num_samples,
            "scheduler": cfg.sweep.scheduler,
            "search": cfg.sweep.search,
            **{f"space {key}": spec.describe() for key, spec in cfg.sweep.space.items()},
        }
    return found


def rows(found: dict[str, Any]) -> list[tuple[str, str]]:
    """``found`` as (what, value) rows for the console's summary table."""
    shown = []
    for key, value in found.items():
        if key == "deepspeed":  # the JSON holds all of it; the table, what tells runs apart
            zero = value["zero_optimization"]["stage"]
            precision = next((p for p in ("bf16", "fp16") if value[p]["enabled"]), "fp32")
            value = f"ZeRO-{zero}, {precision}, train_batch_size {value['train_batch_size']}"
        elif isinstance(value, dict):
            value = ", ".join(f"{k} {v}" for k, v in value.items())
        elif isinstance(value, int) and not isinstance(value, bool):
            value = f"{value:,}"
        shown.append((key.replace("_", " "), str(value)))
    return shown
