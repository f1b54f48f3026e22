"""The ``data:`` section of a run config: where the data comes from, how it is read, split and
streamed, and each feature column's rule (``FeatureConfig``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from trainers.sections import Section


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
    ("table", "sequence"): ("split_column",),
    ("sequence", "series"): ("time",),
    ("series",): ("target", "window", "horizon", "season", "blocks", "scaling"),
    ("table",): ("features", "max_one_hot", "row_key", "split", "cache_stats"),
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
        "statistics by one Ray Data pass over P'); off reads the whole table into memory; "
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
    split_column: str | None = Field(
        None,
        description="A column that fixes the split, as a benchmark's protocol does: each row "
        "(data.kind sequence: each sequence, the same on all its rows) is train, val or test. "
        "T is the test rows (data.test_fraction is not used); V the val rows, or drawn from the "
        "train rows by strategy.val_fraction when none is val; red and blue split the rest. "
        "Left out of the features. Not for series, which are split by time.",
    )
    row_key: str | None = Field(
        None,
        description="data.split hash: the column whose value keys a row (an id; left out of "
        "the features); unset: the row's position in its file (with the file's path).",
    )
    cache_stats: bool = Field(
        True,
        description="A streamed table: keep the statistics of its pass over every row (the "
        "parts' sizes, classes and preprocessing) in the local cache (REDBLUE_CACHE, else "
        "~/.cache/redblue), keyed by the files' paths, sizes and modification times and by the "
        "split and columns, so that a later run over the same files starts without the pass.",
    )

    @field_validator("streaming", mode="before")
    @classmethod
    def _yaml_on_off(cls, value: object) -> object:
        """YAML reads a bare ``on``/``off`` as true/false: they mean ``on``/``off`` here."""
        return {True: "on", False: "off"}.get(value, value) if isinstance(value, bool) else value

    @model_validator(mode="after")
    def _series_settings(self) -> DataConfig:
        if self.kind == "series" and self.split_column is not None:
            raise ValueError(
                "data.split_column: a series is split by time (T is its last data.test_fraction "
                "of steps, V the blocks before it), not by a column"
            )
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
        if self.split_column is not None and self.split != "auto":
            raise ValueError(
                f"data.split_column and data.split {self.split} both choose the split; use one"
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
