"""Classification and regression on a table (``data.kind: table``): one row a sample, its raw
columns encoded by the preprocessing fitted on the training pool P' (``trainers.data.tables``,
``trainers.data.preprocessing``); a model takes rows of raw values."""

from __future__ import annotations

from typing import Any

import numpy as np

from trainers.config import RunSettings
from trainers.data.drift import summarize
from trainers.data.preprocessing import FILLING, Preprocessing, of_model, summary_lines
from trainers.data.sources import BUNDLED
from trainers.data.splits import split_samples
from trainers.data.tables import encode, load_table
from trainers.data.tabular_input import TabularInput
from trainers.dataset import Dataset, Split
from trainers.spec import ModelSpec
from trainers.tasks.base import CheckInputs, DataReport, PreparedData, Task, model_spec


def prepare(cfg: RunSettings) -> PreparedData:
    table = load_table(cfg.data)
    split = split_samples(table, cfg)
    dataset = encode(table, split.train)  # preprocessing fitted on P' only
    return PreparedData(dataset, split, table_spec(cfg, dataset, split.train))


def table_spec(cfg: RunSettings, dataset: Dataset, pool: np.ndarray) -> ModelSpec:
    """The model's spec: its fitted preprocessing and the drift summary of the rows ``pool`` of
    P' (all of it, or a streamed table's sample)."""
    fitted = dataset.preprocessing
    assert fitted is not None
    dense = dataset.features[pool][:, : len(fitted.dense_names)]
    return model_spec(
        cfg,
        dataset,
        fitted.width,
        input_summary=summarize(dense, fitted.dense_names),
        preprocessing=fitted.to_dict(),
    )


def input_schema(spec: ModelSpec) -> TabularInput:
    return TabularInput(of_model(spec))


def example_input(spec: ModelSpec, count: int) -> list[dict[str, Any]]:
    return input_schema(spec).example(spec.input_summary, count)


def check_inputs(spec: ModelSpec, source: str | None, count: int) -> CheckInputs:
    """The first rows of the bundled data set the model was trained on, with their labels (rows
    of numbers for a model of number columns, else records of raw values); otherwise a typical
    record (no labels)."""
    from trainers.config import DataConfig

    schema = input_schema(spec)
    names = list(schema.feature_names)
    if source in BUNDLED:
        table = load_table(DataConfig(source=source))
        if set(names) <= set(table.frame.columns):
            labels = table.labels[:count]
            truth = np.asarray(table.classes)[labels] if table.classes else labels
            rows = table.frame[names].head(count)
            if schema.preprocessing.all_numeric and rows.notna().all().all():
                return CheckInputs(rows.to_numpy(dtype=np.float32), truth.tolist())
            records = rows.astype(object).where(rows.notna(), None).to_dict("records")
            return CheckInputs(records, truth.tolist())
    return CheckInputs(example_input(spec, count))


def describe(dataset: Dataset, split: Split) -> DataReport:
    """How the feature columns are read (fitted on P'), and the rows left out."""
    fitted = dataset.preprocessing
    if fitted is None:
        return DataReport()
    lines = [
        f"features: {len(fitted.columns)} columns, fitted on the training pool "
        f"({len(split.train)} rows)"
    ]
    lines += [f"  {how:<28} {names}" for how, names in summary_lines(fitted)]
    if dataset.dropped_labels:
        lines.append(f"  left out {dataset.dropped_labels} row(s) without a label")
    if dataset.dropped_rows:
        lines.append(
            f"  left out {dataset.dropped_rows} row(s) with a gap in a 'missing: drop' column"
        )
    params = preprocessing_params(fitted)
    params["data.dropped_labels"] = str(dataset.dropped_labels)
    params["data.dropped_rows"] = str(dataset.dropped_rows)
    return DataReport(
        lines=lines, params=params, artifacts={"preprocessing.json": fitted.to_dict()}
    )


def preprocessing_params(fitted: Preprocessing) -> dict[str, str]:
    """MLflow params: the columns by type, the imputed ones, the encoded width."""
    by_type = {
        kind: ",".join(c.name for c in fitted.columns if c.type == kind)
        for kind in ("category", "boolean")
    }
    imputed = ",".join(f"{c.name}:{c.missing}" for c in fitted.columns if c.missing in FILLING)
    return {
        "preprocessing.numbers": str(sum(c.type == "number" for c in fitted.columns)),
        "preprocessing.categories": by_type["category"] or "-",
        "preprocessing.booleans": by_type["boolean"] or "-",
        "preprocessing.imputed": imputed[:6000] or "-",
        "preprocessing.width": str(fitted.width),
    }


TASK = Task(
    kind="table",
    prepare=prepare,
    input_schema=input_schema,
    example_input=example_input,
    check_inputs=check_inputs,
    describe=describe,
    streams=True,
)
