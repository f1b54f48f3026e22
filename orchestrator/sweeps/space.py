"""From the config's ``sweep`` section to Ray Tune objects: the space, scheduler and searcher."""

from __future__ import annotations

from typing import Any

from ray import tune
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, PopulationBasedTraining

from orchestrator.config import RedblueConfig
from orchestrator.sweeps.config import PBT_MUTABLE_KEYS, SpaceSpec, SweepSection

# Tune counts one result per round plus the final one; schedulers measure time in these.
TIME_ATTR = "training_iteration"


def tune_domain(spec: SpaceSpec) -> Any:
    values = getattr(spec, spec.kind)
    if spec.kind == "loguniform":
        return tune.loguniform(*values)
    if spec.kind == "uniform":
        return tune.uniform(*values)
    if spec.kind == "randint":
        return tune.randint(*values)
    if spec.kind == "choice":
        return tune.choice(values)
    return tune.grid_search(values)


def param_space(sweep: SweepSection) -> dict[str, Any]:
    """Tune's param space, keyed by the same dotted config keys as ``sweep.space``."""
    return {key: tune_domain(spec) for key, spec in sweep.space.items()}


def scheduler(cfg: RedblueConfig, num_rounds: int) -> Any:
    """ASHA, FIFO or population-based training, as ``sweep.scheduler`` says."""
    sweep = cfg.sweep
    if sweep.scheduler == "pbt":
        return population_based_training(cfg)
    if sweep.scheduler == "asha":
        return ASHAScheduler(
            time_attr=TIME_ATTR,
            max_t=num_rounds + 1,
            grace_period=min(sweep.grace_rounds, num_rounds),
            reduction_factor=sweep.reduction_factor,
        )
    return FIFOScheduler()


def searcher(cfg: RedblueConfig, concurrency: int) -> Any:
    """Random (and grid) sampling or Optuna's TPE, both seeded by ``cfg.seed``: the same config
    samples the same trials, so schedulers can be compared on equal terms. At most
    ``concurrency`` trials run at once (Tune's ``max_concurrent_trials`` is ignored, with a
    warning, for the random generator, which takes its own limit)."""
    if cfg.sweep.search == "random":
        from ray.tune.search.basic_variant import BasicVariantGenerator

        return BasicVariantGenerator(random_state=cfg.seed, max_concurrent=concurrency)
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.optuna import OptunaSearch

    return ConcurrencyLimiter(OptunaSearch(seed=cfg.seed), max_concurrent=concurrency)


def population_based_training(cfg: RedblueConfig) -> PopulationBasedTraining:
    """PBT over the swept keys it may change mid-run, at every checkpoint (so that the trials
    it copies from have one to give). A perturbed value is kept within its swept range."""
    mutable = {key: spec for key, spec in cfg.sweep.space.items() if key in PBT_MUTABLE_KEYS}

    def within_bounds(config: dict[str, Any]) -> dict[str, Any]:
        for key, spec in mutable.items():
            if spec.kind in ("loguniform", "uniform", "randint"):
                low, high = spec.candidates()
                config[key] = min(max(config[key], low), high)
        return config

    return PopulationBasedTraining(
        time_attr=TIME_ATTR,
        perturbation_interval=cfg.checkpoint.every_rounds,
        hyperparam_mutations={
            key: list(spec.candidates()) if spec.kind in ("choice", "grid") else tune_domain(spec)
            for key, spec in mutable.items()
        },
        custom_explore_fn=within_bounds,
        log_config=False,
    )
