"""``redblue compare CONFIG --seeds N``: the config trained with both strategies on each seed.

For each seed 0..N-1 the config trains twice, ``strategy.kind: red_blue`` and ``standard``: the
same split (the seed makes it: the same test part T and validation slice V; standard training on
the pool P' = R + B), the same initialisation (the seed) and the same optimizer-step budget
(``trainers.loop.rounds.plan_rounds``). The 2N trainings are a Tune grid run by the sweep machinery
(:func:`orchestrator.sweeps.run.run_trials`), so they spread over the local Ray or a cluster,
each is a child MLflow run (tags ``redblue.strategy``, ``redblue.seed``) under one parent
(``redblue.kind=compare``), and ``--resume`` continues an interrupted comparison without
training its finished children again.
"""

from __future__ import annotations

from dataclasses import dataclass

from orchestrator import console
from orchestrator.compare.report import log_to_parent, print_comparison
from orchestrator.compare.stats import STRATEGIES, Child, paired
from orchestrator.config import RedblueConfig
from orchestrator.exit_codes import EXIT_FAILED, EXIT_OK
from orchestrator.sweeps.conclude import delete_checkpoints
from orchestrator.sweeps.config import SpaceSpec, SweepSection
from orchestrator.sweeps.results import TrialOutcome
from orchestrator.sweeps.run import run_trials
from trainers.loop.plan import RunPlan

DEFAULT_SEEDS = 5


@dataclass
class Comparison:
    parent_run_id: str
    compare_id: str
    children: list[Child]
    metrics: dict[str, float]
    verdict: str


def compare_config(cfg: RedblueConfig, seeds: int) -> RedblueConfig:
    """``cfg`` with a sweep section that is the comparison's grid: strategy x seed, run in full
    (FIFO), checkpoints kept only if ``sweep.keep_all_checkpoints``."""
    sweep = SweepSection(
        space={
            "strategy.kind": SpaceSpec(grid=list(STRATEGIES)),
            "seed": SpaceSpec(grid=list(range(seeds))),
        },
        num_samples=1,
        max_concurrent=cfg.sweep.max_concurrent,
        scheduler="fifo",
        search="random",
        keep_all_checkpoints=cfg.sweep.keep_all_checkpoints,
    )
    return cfg.model_copy(update={"sweep": sweep})


def compare(
    cfg: RedblueConfig, plan: RunPlan, address: str | None, seeds: int, resume: bool
) -> tuple[int, Comparison | None]:
    """Run (or resume) the comparison; returns (exit code, comparison when it concluded). The
    code is 1 when no seed finished with both strategies."""
    grid = compare_config(cfg, seeds)
    rule = plan.task.score(plan.spec)

    def finish(parent, compare_id: str, folder: str, trials: list[TrialOutcome]) -> Comparison:
        children = [_child(trial) for trial in trials]
        metrics = log_to_parent(parent, children, rule.metric)
        verdict = print_comparison(children, rule.metric, rule.higher_is_better, metrics)
        parent.set_tag("redblue.verdict", verdict)
        if not grid.sweep.keep_all_checkpoints:
            delete_checkpoints(folder, keep=None)
        unfinished = [c for c in children if c.status != "FINISHED"]
        for child in unfinished:
            console.print_warning(
                f"{child.strategy} on seed {child.seed} ended {child.status} (run {child.run_id})"
            )
        if paired(children, rule.metric).seeds:
            parent.finish()
        else:
            parent.fail("no seed finished with both strategies")
        return Comparison(parent.run_id, compare_id, children, metrics, verdict)

    code, comparison = run_trials(grid, plan, address, resume, "compare", finish)
    if comparison is None:
        return code, None
    concluded = comparison.metrics.get("seeds_paired", 0) > 0
    return (EXIT_OK if concluded else EXIT_FAILED), comparison


def _child(trial: TrialOutcome) -> Child:
    return Child(
        strategy=str(trial.params["strategy.kind"]),
        seed=int(trial.params["seed"]),
        run_id=trial.run_id,
        status=trial.status,
        metrics=trial.metrics,
    )
