"""Whether a run streams its table (``data.streaming``), decided on the driver before Ray
starts from the source's listing and schema alone (no row is read); what streaming refuses,
refused here with one message (exit 2)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from trainers.config import RunSettings
from trainers.data.sources import BUNDLED, Parts, open_parts
from trainers.data.splits import hash_split_of
from trainers.data.table_stats import Layout
from trainers.errors import DataError
from trainers.tasks import task_of
from trainers.tasks.base import DataReport

if TYPE_CHECKING:
    from trainers.loop.plan import RunPlan

BYTES_PER_CELL = 8  # a cell in memory, as the in-memory path holds numbers (float64)


@dataclass(frozen=True)
class PendingStream:
    """A streamed run before its plan: the source opened and its layout checked (on the driver,
    before Ray starts); ``orchestrator.streaming.plan`` plans it once Ray is up."""

    parts: Parts
    layout: Layout

    @classmethod
    def open(cls, cfg: RunSettings) -> PendingStream:
        parts = open_parts(cfg.data.source)
        return cls(parts, layout_of(cfg, parts))

    def lines(self) -> list[str]:
        """What is known before the pass: the files and the columns."""
        return [
            f"streaming {self.parts.source}: {len(self.parts.paths)} {self.parts.format} "
            f"file(s), {len(self.layout.kinds)} feature columns, label {self.layout.label!r}; "
            "split by a hash of "
            + (
                f"column {self.layout.data.row_key!r}"
                if self.layout.data.row_key
                else "each row's position in its file"
            ),
            "  statistics over the training pool come from one Ray Data pass once Ray is up",
        ]


def streams(cfg: RunSettings) -> bool:
    """Whether ``cfg``'s table is streamed; ``on`` with something that needs every row in
    memory is refused."""
    data = cfg.data
    if data.streaming == "off" or not task_of(data.kind).streams:
        return False
    needs_memory = in_memory_reasons(cfg)
    if data.streaming == "on":
        if data.source in BUNDLED:
            raise DataError(
                f"data.streaming on streams files; data.source {data.source} is a bundled data "
                "set, read in memory: set data.streaming: off, or point data.source at files"
            )
        if needs_memory:
            raise DataError(
                f"data.streaming on cannot stream this run: {needs_memory[0]} needs every row in "
                "memory (docs/training.md#streaming); set data.streaming: off"
            )
        return True
    if data.source in BUNDLED or needs_memory:
        return False
    return table_bytes(open_parts(data.source)) > data.stream_above * worker_memory(cfg)


def plan_input(cfg: RunSettings) -> tuple[RunPlan | PendingStream, DataReport]:
    """What the CLI checks before Ray starts: the in-memory plan, or a streamed table's source
    and layout (planned once Ray is up); and what to print about the data."""
    from trainers.loop.plan import plan_run

    if not streams(cfg):
        plan = plan_run(cfg)
        return plan, plan.task.describe(plan.dataset, plan.split)
    pending = PendingStream.open(cfg)
    return pending, DataReport(lines=pending.lines())


def in_memory_reasons(cfg: RunSettings) -> list[str]:
    """The settings of ``cfg`` that need the table in memory."""
    reasons = []
    if cfg.strategy.clean != "off":
        reasons.append(f"strategy.clean {cfg.strategy.clean} (per-row cross-predictions)")
    if cfg.data.label_noise > 0:
        reasons.append("data.label_noise (the noisy rows are drawn from P' in memory)")
    if cfg.data.train_fraction < 1:
        reasons.append("data.train_fraction (drawn from P' in memory)")
    if cfg.model.model_dump()["kind"] == "gan":
        reasons.append("model.kind gan (its judge is fitted on P' in memory)")
    if cfg.data.split_column:
        reasons.append("data.split_column (each row's part is read with the table)")
    if cfg.data.split == "stratified":
        reasons.append("data.split stratified (drawn by class from the whole table)")
    return reasons


def table_bytes(parts: Parts) -> int:
    """The table's size in memory, estimated from the listing: rows (Parquet footers) times
    columns times 8 bytes, or a CSV's size on disk."""
    if parts.format == "parquet":
        rows = sum(fragment.count_rows() for fragment in parts.dataset.get_fragments())
        return rows * len(parts.dataset.schema) * BYTES_PER_CELL
    return sum(parts.filesystem.get_file_info(path).size or 0 for path in parts.paths)


def worker_memory(cfg: RunSettings) -> float:
    """One worker's share of this machine's memory."""
    import psutil

    return psutil.virtual_memory().total / cfg.scaling.num_workers


def layout_of(cfg: RunSettings, parts: Parts) -> Layout:
    """How the source's batches are read: the label, the feature columns and their types (from
    the schema), the split; DataError naming a column the config names but the data lacks."""
    import pyarrow as pa

    data, schema = cfg.data, parts.dataset.schema
    columns = list(schema.names)
    if data.label is None:
        raise DataError(f"data.label must name the label column of {data.source}")
    key = [data.row_key] if data.row_key else []
    named = {"label": [data.label], "drop": data.drop, "features": list(data.features)}
    for name, names in {**named, "row_key": key}.items():
        unknown = [n for n in names if n not in columns]
        if unknown:
            what = "label column" if name == "label" else f"data.{name} names column(s)"
            raise DataError(
                f"{what} {', '.join(map(repr, unknown))} not found in {data.source}; columns "
                "are: " + ", ".join(columns)
            )
    left_out = {data.label, *data.drop, *key}
    kinds = {}
    for field in schema:
        if field.name in left_out:
            continue
        rule = data.features.get(field.name)
        kinds[field.name] = (rule.type if rule else None) or _kind(field.type)
    if not kinds:
        raise DataError(f"{data.source} has no feature columns besides the label {data.label!r}")
    label_type = schema.field(data.label).type
    return Layout(
        data=data,
        label=data.label,
        kinds=kinds,
        how=hash_split_of(cfg),
        label_type="integer"
        if pa.types.is_integer(label_type)
        else "float"
        if pa.types.is_floating(label_type)
        else "other",
    )


def _kind(arrow_type) -> str:
    """A column's type as ``trainers.data.preprocessing.infer_type`` infers it from pandas."""
    import pyarrow as pa

    if pa.types.is_boolean(arrow_type):
        return "boolean"
    if pa.types.is_integer(arrow_type) or pa.types.is_floating(arrow_type):
        return "number"
    if pa.types.is_decimal(arrow_type):
        return "number"
    return "category"
