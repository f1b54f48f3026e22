"""``redblue compare CONFIG --seeds N --strategies ...``: the config trained with each named
strategy on each seed.

For each seed 0..N-1 the config trains once per strategy (:mod:`orchestrator.compare.strategies`:
``standard``, ``red_blue``, ``red_blue_prune``, ...): the same split (the seed makes it: the same
test part T and validation slice V; standard training on the pool P' = R + B), the same
initialisation (the seed) and the same optimizer-step budget
(``trainers.loop.rounds.plan_rounds``). The trainings are a Tune grid of strategy x seed run by
the sweep machinery (:func:`orchestrator.sweeps.run.run_trials`; the strategy is a pseudo key
that sets ``strategy.kind`` and ``strategy.clean``), so they spread over the local Ray or a
cluster, each is a child MLflow run (tags ``redblue.strategy``, the name, and ``redblue.seed``)
under one parent (``redblue.kind=compare``), and ``--resume`` continues an interrupted
comparison without training its finished children again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from orchestrator import console
from orchestrator.compare.report import log_to_parent, print_comparison
from orchestrator.compare.stats import STRATEGIES, Child
from orchestrator.compare.strategies import DEFAULT, STRATEGY_KEY, parse_strategies, presets
from orchestrator.config import ConfigError, RedblueConfig
from orchestrator.exit_codes import EXIT_FAILED, EXIT_INVALID, EXIT_OK
from orchestrator.streaming.choice import PendingStream
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
    verdicts: dict[str, str]  # strategy -> its one-line verdict against standard training


def compare_config(
    cfg: RedblueConfig, seeds: int, strategies: Sequence[str] = STRATEGIES
) -> RedblueConfig:
    """``cfg`` with a sweep section that is the comparison's grid: strategy x seed, run in full
    (FIFO), checkpoints kept only if ``sweep.keep_all_checkpoints``."""
    sweep = SweepSection(
        space={
            STRATEGY_KEY: SpaceSpec(grid=list(strategies)),
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
    cfg: RedblueConfig,
    plan: RunPlan | PendingStream,
    address: str | None,
    seeds: int,
    resume: bool,
    strategies: str = DEFAULT,
) -> tuple[int, Comparison | None]:
    """Run (or resume) the comparison of the comma list ``strategies``; returns (exit code,
    comparison when it concluded). The code is 2 (before Ray starts) for an unknown strategy, 1
    when no seed finished with every strategy."""
    try:
        names, added = parse_strategies(strategies)
    except ConfigError as exc:
        console.print_error(str(exc))
        return EXIT_INVALID, None
    if added:
        console.err.print(
            "--strategies: standard added, the baseline every strategy is paired with"
        )
    grid = compare_config(cfg, seeds, names)

    def finish(
        parent, compare_id: str, folder: str, trials: list[TrialOutcome], planned: RunPlan
    ) -> Comparison:
        rule = planned.task.score(planned.spec)
        children = [_child(trial) for trial in trials]
        metrics = log_to_parent(parent, children, rule.metric, names)
        verdicts = print_comparison(children, rule.metric, rule.higher_is_better, metrics, names)
        parent.set_tag("redblue.verdict", "\n".join(verdicts.values()))
        if not grid.sweep.keep_all_checkpoints:
            delete_checkpoints(folder, keep=None)
        unfinished = [c for c in children if c.status != "FINISHED"]
        for child in unfinished:
            console.print_warning(
                f"{child.strategy} on seed {child.seed} ended {child.status} (run {child.run_id})"
            )
        if metrics["seeds_paired"] > 0:
            parent.finish()
        else:
            parent.fail("no seed finished with every strategy")
        return Comparison(parent.run_id, compare_id, children, metrics, verdicts)

    code, comparison = run_trials(grid, plan, address, resume, "compare", finish, presets())
    if comparison is None:
        return code, None
    concluded = comparison.metrics.get("seeds_paired", 0) > 0
    return (EXIT_OK if concluded else EXIT_FAILED), comparison


def _child(trial: TrialOutcome) -> Child:
    return Child(
        strategy=str(trial.params[STRATEGY_KEY]),
        seed=int(trial.params["seed"]),
        run_id=trial.run_id,
        status=trial.status,
        metrics=trial.metrics,
    )
