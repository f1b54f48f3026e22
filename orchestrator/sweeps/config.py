"""The ``sweep`` section of the run config: the search space (dotted config keys), the scheduler,
the search algorithm. ``orchestrator.config.RedblueConfig`` composes it with the other sections;
``orchestrator.config.space_problems`` checks the space against the whole schema.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field, model_validator

from trainers.config import Section
from trainers.families import FAMILIES

SPACE_KINDS = ("loguniform", "uniform", "randint", "choice", "grid")
# Keys population-based training may change while a trial runs: a restored checkpoint takes them
# from the config. Every other swept key is sampled once and inherited with a cloned checkpoint
# (batch size or red ratio would change the data split the checkpoint was made on).
# The ``model.*`` ones are each family's own (``Family.pbt_mutable``: the MLP's dropout).
PBT_MUTABLE_KEYS = (
    "optim.lr",
    "optim.weight_decay",
    "optim.grad_clip",
    *sorted({key for family in FAMILIES.values() for key in family.pbt_mutable}),
)

# Pseudo keys of a grid that are not config keys: each value of one names several config values
# at once (``redblue compare``'s strategy names). Key -> value -> {dotted config key: value}.
Presets = Mapping[str, Mapping[Any, Mapping[str, Any]]]


def config_values(params: Mapping[str, Any], presets: Presets | None) -> dict[str, Any]:
    """A trial's sampled ``params`` as dotted config keys: the value of a pseudo key of
    ``presets`` replaced by the config values it names."""
    values: dict[str, Any] = {}
    for key, value in params.items():
        if presets and key in presets:
            values.update(presets[key][value])
        else:
            values[key] = value
    return values


class SpaceSpec(Section):
    """One swept key: exactly one of the distributions below."""

    loguniform: tuple[float, float] | None = Field(
        None, description="[low, high], sampled uniformly in log space; low > 0."
    )
    uniform: tuple[float, float] | None = Field(None, description="[low, high], uniform.")
    randint: tuple[int, int] | None = Field(
        None, description="[low, high): an integer, high excluded (as in Ray Tune)."
    )
    choice: list[Any] | None = Field(None, description="Values sampled uniformly.")
    grid: list[Any] | None = Field(
        None, description="Every value is tried (each sample covers the whole grid)."
    )

    @model_validator(mode="after")
    def _one_distribution(self) -> SpaceSpec:
        given = [kind for kind in SPACE_KINDS if getattr(self, kind) is not None]
        if len(given) != 1:
            raise ValueError(
                f"give exactly one of {', '.join(SPACE_KINDS)} (got {given or 'none'})"
            )
        kind = given[0]
        if kind in ("loguniform", "uniform", "randint"):
            low, high = getattr(self, kind)
            if not low < high:
                raise ValueError(f"{kind} needs low < high (got [{low}, {high}])")
            if kind == "loguniform" and low <= 0:
                raise ValueError(f"loguniform needs low > 0 (got {low})")
        elif not getattr(self, kind):
            raise ValueError(f"{kind} needs at least one value")
        return self

    @property
    def kind(self) -> str:
        return next(kind for kind in SPACE_KINDS if getattr(self, kind) is not None)

    def candidates(self) -> list[Any]:
        """Values to check against the schema: the bounds of a range, every listed value."""
        values = getattr(self, self.kind)
        if self.kind == "randint":
            return [values[0], values[1] - 1]
        return list(values)

    def describe(self) -> str:
        return f"{self.kind}({', '.join(map(str, getattr(self, self.kind)))})"


class SweepSection(Section):
    space: dict[str, SpaceSpec] = Field(
        default_factory=dict,
        description="Search space keyed by dotted config keys, e.g. "
        "optim.lr: {loguniform: [1.0e-4, 1.0e-2]}.",
    )
    num_samples: int = Field(8, ge=1, description="Trials to sample (times the grid size).")
    max_concurrent: int | None = Field(
        None,
        ge=1,
        description="Trials at once; default: as many as the cluster's free CPUs/GPUs hold.",
    )
    metric: str = Field(
        "val_loss",
        description="Metric that ranks trials, one every round reports: val_loss; a classifier's "
        "val_accuracy, a GAN's val/label_accuracy or val/classes_covered (each with sweep.mode: "
        "max). Checked before Ray starts; the test part is never used.",
    )
    mode: Literal["min", "max"] = Field("min", description="Whether the metric is minimised.")
    scheduler: Literal["asha", "fifo", "pbt"] = Field(
        "asha",
        description="Trial scheduler: ASHA early stopping, FIFO, or population-based training "
        "(pbt: every checkpoint.every_rounds rounds the worst quarter of the running trials "
        "continue from the best ones' checkpoints with perturbed optim.lr, optim.weight_decay, "
        "optim.grad_clip or model.dropout).",
    )
    search: Literal["random", "optuna"] = Field(
        "random", description="Search algorithm: random (and grid) sampling, or Optuna's TPE."
    )
    grace_rounds: int = Field(3, ge=1, description="ASHA: rounds every trial runs before a cut.")
    reduction_factor: int = Field(3, ge=2, description="ASHA: keep 1/N of the trials at each rung.")
    keep_all_checkpoints: bool = Field(
        False, description="Keep every trial's checkpoints; by default only the best trial's stay."
    )

    @model_validator(mode="after")
    def _consistent(self) -> SweepSection:
        if self.scheduler == "pbt" and self.space and not set(self.space) & set(PBT_MUTABLE_KEYS):
            raise ValueError(
                "sweep.scheduler pbt needs at least one of "
                f"{', '.join(PBT_MUTABLE_KEYS)} in sweep.space: those are the values it perturbs"
            )
        if self.scheduler == "pbt" and self.search != "random":
            raise ValueError(
                "sweep.scheduler pbt chooses the trials' values itself; use sweep.search random"
            )
        if self.metric.startswith("test"):
            raise ValueError(f"sweep.metric {self.metric!r}: the test part is never used to select")
        if self.search == "optuna" and any(s.kind == "grid" for s in self.space.values()):
            raise ValueError("sweep.search optuna cannot take grid entries; use choice instead")
        return self


HIGHER_IS_BETTER = ("val_accuracy", "val/label_accuracy", "val/classes_covered")


def round_metrics(kind: str, task: str, streamed: bool) -> tuple[str, ...]:
    """The validation metrics a trial reports every round, which ``sweep.metric`` may rank by:
    ``val_loss``; a classifier's ``val_accuracy`` (not streamed); a GAN's collapse measures."""
    if kind == "gan":
        return ("val_loss", "val/label_accuracy", "val/classes_covered")
    if task == "classification" and not streamed:
        return ("val_loss", "val_accuracy")
    return ("val_loss",)


def metric_problem(section: SweepSection, kind: str, task: str, streamed: bool) -> str | None:
    """Why trials could not be ranked by ``sweep.metric`` and ``sweep.mode``, or None."""
    reported = round_metrics(kind, task, streamed)
    if section.metric not in reported:
        return (
            f"sweep.metric {section.metric!r}: the trials of this run report "
            f"{', '.join(reported)} every round"
        )
    if section.metric in HIGHER_IS_BETTER and section.mode != "max":
        return f"sweep.metric {section.metric} grows as trials get better: set sweep.mode: max"
    return None


def plan_metric_problem(metric_section: SweepSection, model_kind: str, plan: Any) -> str | None:
    """:func:`metric_problem` for a planned run (a RunPlan knows its task; a table still to be
    streamed reports ``val_loss`` only)."""
    spec = getattr(plan, "spec", None)
    if spec is None:
        return metric_problem(metric_section, model_kind, "", streamed=True)
    return metric_problem(metric_section, spec.kind, spec.task, streamed=False)


def streamed_trial_problem(cfg: Any, presets: Presets | None) -> tuple[str, Any, str] | None:
    """(key, value, setting) of the first value of ``cfg.sweep.space`` whose trial would need
    every row in memory (``orchestrator.streaming.choice.in_memory_reasons``), for a streamed
    table: such a trial would refuse (``data.streaming: on``) or read the whole table on its own
    (``auto``). Each key is checked on its own: none of them depends on another."""
    from pydantic import ValidationError

    from orchestrator.streaming.choice import in_memory_reasons

    for key, spec in cfg.sweep.space.items():
        for value in spec.candidates():
            try:
                trial = cfg.with_values(config_values({key: value}, presets))
            except ValidationError:
                continue  # the schema's own check names it
            reasons = in_memory_reasons(trial)
            if reasons:
                return key, value, reasons[0]
    return None
