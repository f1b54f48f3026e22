"""The rules of ``redblue predict``'s arguments, as pure functions (no file system, no Ray).

Every problem is a :class:`PredictError` whose message names it; the CLI prints it and exits 2
before Ray starts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from trainers.errors import InputError
from trainers.spec import ModelSpec
from trainers.tasks import input_schema, task_for

FORMATS = ("csv", "parquet")
SUFFIXES = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
PREDICTION = "prediction"
PROBA_PREFIX = "proba_"


class PredictError(ValueError):
    """The arguments, the input or the model do not fit together; the message says how."""


def suffix_format(path: str) -> str | None:
    """``csv`` or ``parquet`` from the path's suffix (case-insensitive), else None."""
    name = path.rstrip("/").rsplit("/", 1)[-1].lower()
    for suffix, fmt in SUFFIXES.items():
        if name.endswith(suffix):
            return fmt
    return None


def input_format(source: str, files: Sequence[str], is_folder: bool) -> str:
    """The format of the input ``source``: a file's suffix, or the one suffix of a folder's
    ``files`` (other files, such as ``_SUCCESS`` or ``.crc``, are not data and are ignored)."""
    if not is_folder:
        fmt = suffix_format(source)
        if fmt is None:
            raise PredictError(
                f"input {source}: unsupported file type; use a .csv or .parquet file, or a "
                "folder of them"
            )
        return fmt
    found = {fmt for fmt in map(suffix_format, files) if fmt}
    if not found:
        raise PredictError(f"input {source}: the folder holds no .csv or .parquet file")
    if len(found) > 1:
        raise PredictError(
            f"input {source}: the folder mixes CSV and Parquet files; keep one format per folder"
        )
    return found.pop()


def is_hidden(relative: str) -> bool:
    """A file inside an input folder that holds no data: a part of its path starts with ``.``
    or ``_`` (``_SUCCESS``, ``.part-0.crc``, ``_temporary/``), as Spark and pyarrow skip them."""
    return any(part.startswith((".", "_")) for part in relative.split("/") if part)


def data_files(files: Sequence[str], fmt: str) -> list[str]:
    """The files of a folder that hold ``fmt`` data, in name order."""
    return sorted(path for path in files if suffix_format(path) == fmt)


def output_format(output: str, input_fmt: str) -> str:
    """The format to write: the output's suffix (``preds.parquet``), else the input's."""
    return suffix_format(output) or input_fmt


def _normalized(path: str) -> str:
    return path.rstrip("/") + "/"


def check_output(output: str, source: str, exists: bool, overwrite: bool) -> None:
    """The output is neither the input nor inside it (or around it: ``--overwrite`` would delete
    the input), and is new unless ``overwrite``."""
    out, src = _normalized(output), _normalized(source)
    if out.startswith(src) or src.startswith(out):
        raise PredictError(
            f"output {output} overlaps the input {source}; write the predictions elsewhere"
        )
    if exists and not overwrite:
        raise PredictError(f"output {output} exists; pass --overwrite to replace it")


def prediction_columns(spec: ModelSpec, proba: bool) -> list[str]:
    """The columns the predictions add: ``prediction``, and ``proba_<class>`` for each class with
    ``proba`` (classification only)."""
    if not proba:
        return [PREDICTION]
    if spec.task != "classification" or not spec.classes:
        raise PredictError(
            f"--proba needs a classification model; this one is a {spec.task} model (it predicts "
            "values, not class probabilities)"
        )
    return [PREDICTION, *(f"{PROBA_PREFIX}{name}" for name in spec.classes)]


def check_columns(input_columns: Sequence[str], added: Sequence[str]) -> None:
    """The added columns must not replace input columns of the same name."""
    clash = [name for name in added if name in input_columns]
    if clash:
        raise PredictError(
            f"the input already has column(s) {clash}, which the predictions would replace; "
            "rename them in the input"
        )


def check_sample(spec: ModelSpec, sample: Any, source: str) -> None:
    """The model's family accepts the input's first rows (its columns, types and values); its
    ``InputError`` names the problem."""
    try:
        input_schema(spec).rows(sample)
    except InputError as exc:
        raise PredictError(f"input {source} does not fit the model: {exc}") from None


def check_sizes(concurrency: int, batch_size: int, cpus_per_actor: float) -> None:
    """Positive sizes (typer checks them on the command line; a caller of the function may not)."""
    if concurrency < 1 or batch_size < 1 or cpus_per_actor <= 0:
        raise PredictError(
            "--concurrency and --batch-size must be at least 1 and --cpus-per-actor above 0"
        )


def check_family(spec: ModelSpec) -> None:
    """Batch prediction is row by row: a model of tables only (a sequence spans rows that Ray
    Data may hand to different batches)."""
    if not task_for(spec).batch_prediction:
        raise PredictError(
            f"redblue predict takes models of tables; this {spec.kind} model takes sequences or a "
            "series: "
            "predict with its MLflow pyfunc model or POST /v1/predict"
        )
