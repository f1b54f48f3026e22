"""Typed config sections owned by the compute layer.

Each section is a pydantic v2 model with ``extra="forbid"`` and a description under every field;
``orchestrator.config.RedblueConfig`` composes them with the control-plane sections.
"""

from __future__ import annotations

from typing import Literal, Protocol

from pydantic import Field, field_validator, model_validator

from trainers.data_config import KIND_KEYS, DataConfig, FeatureConfig
from trainers.sections import Section

__all__ = ["KIND_KEYS", "DataConfig", "FeatureConfig", "Section"]  # where they are also read


class OptimConfig(Section):
    name: Literal["sgd", "adam", "adamw"] = Field(
        "adamw", description="Optimizer: sgd (with momentum), adam or adamw (torch optimizers)."
    )
    lr: float = Field(1e-3, gt=0.0, le=10.0, description="Peak learning rate.")
    momentum: float = Field(0.9, ge=0.0, lt=1.0, description="Momentum for sgd.")
    beta1: float = Field(
        0.9,
        ge=0.0,
        lt=1.0,
        description="adam/adamw: decay of the gradient's running mean (GANs train with 0.5).",
    )
    beta2: float = Field(
        0.999, ge=0.0, lt=1.0, description="adam/adamw: decay of the squared gradient's mean."
    )
    weight_decay: float = Field(0.0, ge=0.0, description="Weight decay.")
    schedule: Literal["constant", "step", "cosine"] = Field(
        "constant", description="Learning-rate schedule after warm-up."
    )
    warmup_steps: int = Field(
        0,
        ge=0,
        description="Linear warm-up from 0 to lr over this many steps of the run clock (2K steps "
        "a round for either strategy; a red-blue replica's own steps are scaled to it).",
    )
    step_every: int = Field(
        100,
        ge=1,
        description="For schedule=step: multiply the lr by step_gamma every N steps of the run "
        "clock (as warmup_steps).",
    )
    step_gamma: float = Field(0.5, gt=0.0, le=1.0, description="For schedule=step: the factor.")
    batch_size: int = Field(
        64,
        ge=1,
        description="Global batch size per optimizer step (over all workers and accumulation "
        "steps).",
    )
    epochs: float = Field(
        20.0,
        gt=0.0,
        description="Training budget in passes over the training pool P' (red and blue samples "
        "counted together).",
    )
    grad_clip: float = Field(0.0, ge=0.0, description="Gradient-norm clipping; 0 turns it off.")
    class_weights: Literal["none", "balanced"] = Field(
        "none",
        description="Classification: balanced weighs each class's training loss by "
        "n / (classes * count) on the training pool, for imbalanced classes. The reported "
        "losses stay unweighted.",
    )
    patience: int = Field(
        0, ge=0, description="Stop after this many evaluations without a better val_loss; 0: off."
    )


class StrategyConfig(Section):
    kind: Literal["red_blue", "standard"] = Field(
        "red_blue", description="red_blue (two replicas, fused) or standard (one model)."
    )
    red_ratio: float = Field(
        0.5, ge=0.05, le=0.95, description="rho: fraction of the training pool given to red."
    )
    val_fraction: float = Field(
        0.1,
        gt=0.0,
        lt=0.5,
        description="Fraction of the pool held out as the validation slice V (both strategies).",
    )
    phase_steps: int = Field(
        10, ge=1, description="K: a round is 2K optimizer steps (K_red + K_blue for red-blue)."
    )
    eval_every: int = Field(1, ge=1, description="Evaluate every N rounds (and at the end).")
    eval_rows: int = Field(
        8192,
        ge=64,
        description="The most rows of each part (red, blue, V) one evaluation scores, so that "
        "an epoch costs O(rows): a larger part is scored in turn, a slice per evaluation. "
        "val_loss (the kept model, early stopping) is always on all of V: every evaluation "
        "when V fits, else every ceil(|V| / eval_rows)-th (the others log val/slice_loss).",
    )
    fuse_every: int = Field(
        1, ge=0, description="Fuse the replicas every N rounds; 0 fuses only at the end."
    )
    fusion: Literal["uniform", "ratio", "loss"] = Field(
        "uniform",
        description="Fusion weight rule: uniform (0.5), ratio (rho) or loss (held-out losses, "
        "clipped to [0.25, 0.75]).",
    )
    clean: Literal["off", "report", "prune", "weight"] = Field(
        "off",
        description="Red-blue classification: find label issues with the replicas' "
        "cross-predictions (confident learning, pruned by noise rate) at every evaluation. "
        "report: flag and report only; prune: flagged rows get zero weight in their half's "
        "training loss; weight: each row's loss is multiplied by its out-of-sample probability "
        "of its given label. The run logs label_issues.csv.",
    )
    clean_start: float = Field(
        0.3,
        ge=0.0,
        lt=1.0,
        description="strategy.clean: the fraction of the rounds before which no row is flagged "
        "(and no loss reweighted).",
    )
    clean_max_fraction: float = Field(
        0.5,
        gt=0.0,
        le=1.0,
        description="strategy.clean: never flag more than this share of a half (the most "
        "confident issues are kept).",
    )

    @field_validator("clean", mode="before")
    @classmethod
    def _yaml_off(cls, value: object) -> object:
        """YAML reads a bare ``off`` as false: it means ``off`` here."""
        return "off" if value is False else value

    @model_validator(mode="after")
    def _clean_needs_red_blue(self) -> StrategyConfig:
        if self.clean != "off" and self.kind != "red_blue":
            raise ValueError(
                f"strategy.clean {self.clean} needs strategy.kind red_blue: its cross-predictions "
                "come from the two halves (standard training has none)"
            )
        return self


class DeepSpeedConfig(Section):
    zero_stage: int | Literal["auto"] = Field(
        "auto",
        description="DeepSpeed ZeRO stage (0-3), or auto: 0 while the training state is at most "
        "1 GiB a worker, 2 up to 4 GiB sharded, else 3 (the choice is printed and logged).",
    )
    precision: Literal["fp32", "bf16", "fp16"] = Field(
        "fp32", description="Training precision; fp16 needs GPUs."
    )
    offload: Literal["none", "cpu"] = Field(
        "none", description="Offload optimizer state to CPU memory (ZeRO stage >= 1)."
    )
    grad_accum_steps: int = Field(1, ge=1, description="Gradient accumulation micro-steps.")

    @field_validator("zero_stage", mode="before")
    @classmethod
    def _stage_or_auto(cls, value: object) -> object:
        if value == "auto" or str(value) in {"0", "1", "2", "3"}:
            return value
        raise ValueError("should be 0, 1, 2, 3 or auto")

    @model_validator(mode="after")
    def _offload_needs_zero(self) -> DeepSpeedConfig:
        if self.offload != "none" and self.zero_stage == 0:
            raise ValueError("offload needs zero_stage >= 1")
        return self


class _Scaling(Protocol):
    @property
    def num_workers(self) -> int: ...
    @property
    def use_gpu(self) -> bool: ...


class _Checkpoint(Protocol):
    @property
    def every_rounds(self) -> int: ...
    @property
    def select(self) -> str: ...


class RunSettings(Protocol):
    """The config sections a plan reads (``orchestrator.config.RedblueConfig`` has them)."""

    @property
    def seed(self) -> int: ...
    @property
    def data(self) -> DataConfig: ...
    @property
    def model(self) -> Section: ...
    @property
    def optim(self) -> OptimConfig: ...
    @property
    def strategy(self) -> StrategyConfig: ...
    @property
    def deepspeed(self) -> DeepSpeedConfig: ...
    @property
    def scaling(self) -> _Scaling: ...
    @property
    def checkpoint(self) -> _Checkpoint: ...
