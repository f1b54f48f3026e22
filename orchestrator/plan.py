"""From a validated config to everything a run is made of: data, split, model spec, rounds.

Pure and Ray-free: the driver calls it before Ray starts (so bad data fails with exit code 2)
and ships the result to the workers through Ray's object store.
"""

from __future__ import annotations

from dataclasses import dataclass

from orchestrator.config import RedblueConfig
from trainers.data import Dataset, Split, load_dataset, make_split
from trainers.drift import summarize
from trainers.rounds import LoopConfig, RoundPlan, plan_rounds
from trainers.spec import ModelSpec


@dataclass(frozen=True)
class RunPlan:
    dataset: Dataset
    split: Split
    spec: ModelSpec
    loop: LoopConfig
    rounds: RoundPlan


def plan_run(cfg: RedblueConfig) -> RunPlan:
    """Load and split the data and size the rounds; raises DataError on unusable data."""
    dataset = load_dataset(cfg.data)
    split = make_split(
        dataset,
        test_fraction=cfg.data.test_fraction,
        val_fraction=cfg.strategy.val_fraction,
        red_ratio=cfg.strategy.red_ratio,
        seed=cfg.seed,
        num_workers=cfg.scaling.num_workers,
    )
    spec = ModelSpec.from_config(
        cfg.model,
        in_features=dataset.features.shape[1],
        out_features=dataset.num_outputs,
        task=dataset.task,
        feature_names=dataset.feature_names,
        classes=dataset.classes,
        input_summary=summarize(dataset.features[split.train], dataset.feature_names),
    )
    loop = LoopConfig(
        strategy=cfg.strategy,
        optim=cfg.optim,
        grad_accum_steps=cfg.deepspeed.grad_accum_steps,
        seed=cfg.seed,
        checkpoint_every=cfg.checkpoint.every_rounds,
        select=cfg.checkpoint.select,
    )
    rounds = plan_rounds(
        train_size=len(split.train),
        batch_size=cfg.optim.batch_size,
        epochs=cfg.optim.epochs,
        phase_steps=cfg.strategy.phase_steps,
        red_ratio=cfg.strategy.red_ratio,
        kind=cfg.strategy.kind,
    )
    return RunPlan(dataset=dataset, split=split, spec=spec, loop=loop, rounds=rounds)
