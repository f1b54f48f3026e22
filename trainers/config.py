"""Typed config sections owned by the compute layer.

Each section is a pydantic v2 model with ``extra="forbid"`` and a description under every field;
``orchestrator.config.RedblueConfig`` composes them with the control-plane sections.
"""

from __future__ import annotations

from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class Section(BaseModel):
    """Base of every config section: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class FeatureConfig(Section):
    """How one feature column is read (``data.features.<column>``); unset keys are inferred."""

    type: Literal["number", "category", "boolean"] | None = Field(
        None,
        description="number (standardized), category (one-hot, or a learned embedding above "
        "data.max_one_hot categories; missing is a category of its own, an unseen one goes to an "
        "unknown bucket) or boolean. Inferred when unset: strings are categories, booleans "
        "booleans, numbers numbers.",
    )
    missing: Literal["mean", "median", "constant", "drop"] | None = Field(
        None,
        description="For number and boolean columns: fill a missing value with the training "
        "pool's mean or median, with fill_value, or drop the row. Unset: mean when the column "
        "has gaps; a column without gaps refuses missing values at prediction.",
    )
    fill_value: float | None = Field(None, description="The value for missing: constant.")

    @model_validator(mode="after")
    def _consistent(self) -> FeatureConfig:
        if self.type == "category" and self.missing is not None:
            raise ValueError(
                "a category column keeps missing values as a category of its own; drop 'missing'"
            )
        if (self.missing == "constant") != (self.fill_value is not None):
            raise ValueError("fill_value goes with missing: constant, and only with it")
        return self


# The data keys that only one kind of data takes (by the kinds that take them).
KIND_KEYS = {
    ("sequence",): ("id", "max_length", "truncate"),
    ("sequence", "series"): ("time",),
    ("series",): ("target", "window", "horizon", "season", "blocks", "scaling"),
    ("table",): ("features", "max_one_hot", "row_key", "split"),
}


def _default(key: str) -> object:
    return DataConfig.model_fields[key].get_default(call_default_factory=True)


class DataConfig(Section):
    kind: Literal["table", "sequence", "series"] = Field(
        "table",
        description="table: one row per sample. sequence: long format, one row per (sequence, "
        "step), named by data.id and ordered by data.time, the label constant within a sequence "
        "(for model.kind rnn, lstm, gru). series: one time series, a row per time step ordered "
        "by data.time, forecast data.horizon steps ahead from data.window steps of history (for "
        "model.kind rnn, lstm, gru).",
    )
    source: str = Field(
        "digits",
        description="A bundled data set (scikit-learn's digits, breast_cancer, wine, diabetes; "
        "penguins, from the palmerpenguins package; digits_rows, the digits as sequences of "
        "pixel rows; co2, statsmodels' Mauna Loa CO2 as a monthly series) or files: a .csv "
        "or .parquet file, a folder of parts (hive partitions such as year=2024/ become "
        "columns) or a glob of them, local or at a URI (s3://, gs://, file://, anything "
        "pyarrow.fs opens). Parts must share one format and one schema.",
    )
    label: str | None = Field(
        None,
        description="Name of the label column. Bundled data sets use 'target' when unset; files "
        "must name it.",
    )
    task: Literal["classification", "regression"] | None = Field(
        None,
        description="Learning task. Inferred when unset: a non-float label, or an integer label "
        "with at most 20 distinct values, is classification.",
    )
    test_fraction: float = Field(
        0.2, gt=0.0, lt=0.9, description="Fraction of the data held out as the test part T."
    )
    label_noise: float = Field(
        0.0,
        ge=0.0,
        lt=1.0,
        description="Fraction of the training pool P' whose labels are replaced at random, "
        "seeded by seed (classification: by another class, as data.label_noise_kind says; "
        "regression: by another training row's value). T keeps its labels; V too unless "
        "data.label_noise_scope is pool_and_val. For studying robustness to noisy labels.",
    )
    label_noise_kind: Literal["symmetric", "pairs"] = Field(
        "symmetric",
        description="Classification: symmetric replaces a label by another class drawn "
        "uniformly; pairs makes class k class k+1 (mod the number of classes), the asymmetric "
        "noise of the co-teaching and confident-learning papers.",
    )
    label_noise_scope: Literal["pool", "pool_and_val"] = Field(
        "pool",
        description="Where data.label_noise applies: the training pool P' only, or P' and the "
        "validation slice V alike (held-out labels as dirty as the training labels, so early "
        "stopping has no clean oracle). The test part T stays clean either way.",
    )
    train_fraction: float = Field(
        1.0,
        gt=0.0,
        le=1.0,
        description="Train on only this fraction of P' (of red and of blue, stratified for "
        "classification), seeded by seed; T and V stay whole. For studying small data.",
    )
    features: dict[str, FeatureConfig] = Field(
        default_factory=dict,
        description="Per feature column, its type and missing-value rule (see the table below); "
        "columns not named here are inferred.",
    )
    drop: list[str] = Field(
        default_factory=list, description="Columns to leave out of the features."
    )
    id: str | None = Field(
        None, description="data.kind sequence: the column naming each row's sequence."
    )
    time: str | None = Field(
        None,
        description="data.kind sequence: the column ordering the steps within a sequence; "
        "series: the column ordering the time steps (numbers or dates).",
    )
    target: str | list[str] | None = Field(
        None,
        description="data.kind series: the column(s) to forecast; every other column but "
        "data.time is a covariate (its history is an input, it is not forecast).",
    )
    window: int | None = Field(
        None, ge=1, description="data.kind series: steps of history a forecast is made from."
    )
    horizon: int = Field(
        1, ge=1, description="data.kind series: steps ahead forecast from each history."
    )
    season: int | None = Field(
        None,
        ge=1,
        description="data.kind series: the season's length in steps (12 for monthly data with "
        "a yearly cycle), for the seasonal naive baseline; at most data.window.",
    )
    blocks: int = Field(
        2,
        ge=1,
        description="data.kind series: the training time before V is cut into this many pairs "
        "of a red and a blue block (red first, sized by strategy.red_ratio).",
    )
    scaling: Literal["last", "global"] = Field(
        "last",
        description="data.kind series: how a history is scaled. last: each column relative to "
        "its value at the history's last step (as NLinear does), so a level the training blocks "
        "never reached is no harder; global: standardized by the training blocks' mean. Either "
        "way a forecast is learned as the change from the last value, in units of the column's "
        "standard deviation on the training blocks.",
    )
    max_length: int | None = Field(
        None,
        ge=1,
        description="data.kind sequence: the most steps a sequence may have; unset: the longest "
        "in the data. Longer ones are refused (with their count) unless data.truncate says "
        "which steps to keep.",
    )
    truncate: Literal["refuse", "head", "tail"] = Field(
        "refuse",
        description="data.kind sequence: a sequence over data.max_length is refused, or cut to "
        "its first (head) or last (tail) steps.",
    )
    max_one_hot: int = Field(
        10,
        ge=2,
        description="A category column with up to this many categories is one-hot encoded; "
        "above it, a learned embedding.",
    )

    streaming: Literal["auto", "on", "off"] = Field(
        "auto",
        description="data.kind table from files: on streams the rows into the workers with Ray "
        "Data (no worker holds the table; the split by a hash of data.row_key, preprocessing "
        "statistics by Ray Data aggregations over P'); off reads the whole table into memory; "
        "auto streams when the table is larger than data.stream_above of one worker's memory "
        "(see docs/training.md#streaming for what streaming refuses).",
    )
    stream_above: float = Field(
        0.25,
        gt=0.0,
        le=1.0,
        description="data.streaming auto: stream when the table (as float64 numbers) exceeds "
        "this share of one worker's memory (this machine's memory over scaling.num_workers).",
    )
    split: Literal["auto", "stratified", "hash"] = Field(
        "auto",
        description="How rows are split into T, V, red and blue. stratified: drawn at random, "
        "seeded by seed, by class (in memory only); hash: by a seeded hash of data.row_key, so "
        "every part of a pipeline agrees without reading the table; auto: hash when streamed, "
        "else stratified.",
    )
    row_key: str | None = Field(
        None,
        description="data.split hash: the column whose value keys a row (an id; left out of "
        "the features); unset: the row's position in its file (with the file's path).",
    )

    @field_validator("streaming", mode="before")
    @classmethod
    def _yaml_on_off(cls, value: object) -> object:
        """YAML reads a bare ``on``/``off`` as true/false: they mean ``on``/``off`` here."""
        return {True: "on", False: "off"}.get(value, value) if isinstance(value, bool) else value

    @model_validator(mode="after")
    def _series_settings(self) -> DataConfig:
        for kind, keys in KIND_KEYS.items():
            stray = [f"data.{key}" for key in keys if getattr(self, key) != _default(key)]
            if stray and self.kind not in kind:
                raise ValueError(
                    f"{', '.join(stray)} {'apply' if len(stray) > 1 else 'applies'} to data.kind "
                    f"{' and '.join(kind)} only (data.kind is {self.kind})"
                )
        if self.streaming == "on" and self.kind != "table":
            raise ValueError(
                f"data.streaming on streams tables only; data.kind {self.kind} needs every row in "
                "memory (sequences are grouped by data.id, series cut into windows): set "
                "data.streaming: off"
            )
        if self.streaming == "on" and self.split == "stratified":
            raise ValueError(
                "data.split stratified draws from the whole table in memory; streamed rows are "
                "split by a hash of data.row_key: set data.split: hash (or auto)"
            )
        if self.kind == "series" and self.window is None:
            raise ValueError("data.kind series needs data.window (steps of history)")
        if self.season is not None and self.window is not None and self.season > self.window:
            raise ValueError(
                f"data.season ({self.season}) must be at most data.window ({self.window}): the "
                "seasonal naive forecast reads the history"
            )
        return self

    @property
    def targets(self) -> list[str]:
        """data.target as a list (empty when unset)."""
        if self.target is None:
            return []
        return [self.target] if isinstance(self.target, str) else list(self.target)


class OptimConfig(Section):
    name: Literal["sgd", "adam", "adamw"] = Field(
        "adamw", description="Optimizer: sgd (with momentum), adam or adamw (torch optimizers)."
    )
    lr: float = Field(1e-3, gt=0.0, le=10.0, description="Peak learning rate.")
    momentum: float = Field(0.9, ge=0.0, lt=1.0, description="Momentum for sgd.")
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
    zero_stage: int = Field(0, ge=0, le=3, description="DeepSpeed ZeRO stage (0-3).")
    precision: Literal["fp32", "bf16", "fp16"] = Field(
        "fp32", description="Training precision; fp16 needs GPUs."
    )
    offload: Literal["none", "cpu"] = Field(
        "none", description="Offload optimizer state to CPU memory (ZeRO stage >= 1)."
    )
    grad_accum_steps: int = Field(1, ge=1, description="Gradient accumulation micro-steps.")

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
