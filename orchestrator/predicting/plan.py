"""Everything ``redblue predict`` settles before Ray starts: the model (a model URI or a saved
folder), the input's files and format, the output, and the input's first rows checked against
the model's input schema. Any problem raises :class:`~orchestrator.predicting.rules.PredictError`
(or the model source's error) with one message; the CLI turns it into exit 2.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs

from orchestrator.predicting import rules
from orchestrator.predicting.rules import PredictError
from orchestrator.storage import is_uri, on_same_storage
from serve_apps.model_bundle import ModelBundle
from trainers.models import CONFIG_FILE, WEIGHTS_FILE
from trainers.spec import FINAL_MODEL_DIR, ModelSpec

SAMPLE_ROWS = 256  # rows of the first file checked against the model before any work starts
URI_PREFIXES = ("models:/", "runs:/")


@dataclass(frozen=True)
class PredictArgs:
    """What the command line asks for."""

    model: str  # models:/NAME@ALIAS, models:/NAME/VERSION, runs:/ID/PATH, models:/m-ID or a folder
    source: str  # a .csv / .parquet file or a folder of them; a local path or a URI (s3://...)
    output: str  # a folder of part files; its suffix (.csv, .parquet) picks the format
    proba: bool = False  # add a proba_<class> column per class (classification only)
    overwrite: bool = False  # replace an existing output
    concurrency: int = 1  # model actors
    batch_size: int = 4096  # rows per batch handed to an actor
    cpus_per_actor: float = 1.0  # Ray CPUs each actor reserves (and its torch threads)


@dataclass(frozen=True)
class PredictPlan:
    """A checked prediction job: what to read, with which model, and where to write."""

    args: PredictArgs
    bundle: ModelBundle
    spec: ModelSpec
    files: list[str]  # the input's data files, absolute paths or URIs
    input_format: str
    output_format: str
    output: str  # absolute path or URI
    added: list[str] = field(default_factory=list)  # the columns the predictions add
    # A folder's hive partitions (year=2024/ -> year), typed as training read them.
    partitions: dict[str, type] = field(default_factory=dict)
    source: str = ""  # the input, absolute: the folder partitions are named under


def plan_prediction(args: PredictArgs) -> PredictPlan:
    """Check ``args`` against the file system, the model and the input's first rows."""
    rules.check_sizes(args.concurrency, args.batch_size, args.cpus_per_actor)
    source, output = absolute(args.source), absolute(args.output)
    files, is_folder = list_input(source)
    in_fmt = rules.input_format(source, files, is_folder)
    files = rules.data_files(files, in_fmt) if is_folder else files
    rules.check_output(output, source, exists(output), args.overwrite)
    bundle = load_bundle(args.model)
    spec = ModelSpec.from_dict(bundle.model_config)
    rules.check_family(spec)
    added = rules.prediction_columns(spec, args.proba)
    partitions = hive_partitions(source, files, in_fmt) if is_folder else {}
    sample = read_sample(files[0], in_fmt)
    for name, kind in partitions.items():  # as Ray Data adds them to every row of a file
        sample[name] = kind(partition_value(files[0], name))
    rules.check_columns(list(sample.columns), added)
    rules.check_sample(spec, sample, args.source)
    return PredictPlan(
        args=args,
        bundle=bundle,
        spec=spec,
        files=files,
        input_format=in_fmt,
        output_format=rules.output_format(output, in_fmt),
        output=output,
        added=added,
        partitions=partitions,
        source=source,
    )


def absolute(path: str) -> str:
    """A URI as given; a local path made absolute (Ray's workers may run elsewhere)."""
    return path if is_uri(path) else str(Path(path).expanduser().resolve())


def file_system(path: str) -> tuple[pafs.FileSystem, str]:
    """pyarrow's file system for ``path`` and the path inside it."""
    if not is_uri(path):
        return pafs.LocalFileSystem(), path
    try:
        return pafs.FileSystem.from_uri(path)
    except Exception as exc:  # pyarrow raises ArrowInvalid, OSError ... with a clear text
        raise PredictError(f"{path}: cannot open it: {exc}") from None


def exists(path: str) -> bool:
    filesystem, inner = file_system(path)
    try:
        return filesystem.get_file_info(inner).type != pafs.FileType.NotFound
    except OSError as exc:  # no access to the bucket, ...
        raise PredictError(f"{path}: cannot reach it: {exc}") from None


def list_input(source: str) -> tuple[list[str], bool]:
    """(the files of ``source``, whether it is a folder): a file is its own list; a folder's
    files are listed recursively, leaving out hidden ones (``.name``, ``_SUCCESS``)."""
    filesystem, inner = file_system(source)
    try:
        info = filesystem.get_file_info(inner)
        if info.type == pafs.FileType.NotFound:
            raise PredictError(f"input {source} not found")
        if info.type != pafs.FileType.Directory:
            return [source], False
        found = filesystem.get_file_info(pafs.FileSelector(inner, recursive=True))
    except OSError as exc:
        raise PredictError(f"input {source}: cannot read it: {exc}") from None
    files = [
        on_same_storage(entry.path, source)
        for entry in found
        if entry.type == pafs.FileType.File and not rules.is_hidden(entry.path[len(inner) :])
    ]
    return files, True


def hive_partitions(source: str, files: list[str], fmt: str) -> dict[str, type]:
    """The hive partition columns of a folder's files (``year=2024/``), each typed as
    ``trainers.data.sources`` reads them for training (pyarrow's discovery: integers, else
    text)."""
    import pyarrow as pa
    import pyarrow.dataset as ds

    folders = files[0][len(source) :].strip("/").split("/")[:-1]
    names = [folder.split("=", 1)[0] for folder in folders if "=" in folder]
    if not names:
        return {}
    filesystem, inner = file_system(source)
    try:
        dataset = ds.dataset(
            [file_system(path)[1] for path in files],
            format=fmt,
            filesystem=filesystem,
            partitioning=ds.HivePartitioning.discover(infer_dictionary=False),
            partition_base_dir=inner,
        )
    except (OSError, ValueError) as exc:
        raise PredictError(f"input {source}: cannot read its partitions: {exc}") from None
    kinds: dict[str, type] = {}
    for name in names:
        arrow_type = dataset.schema.field(name).type
        kinds[name] = int if pa.types.is_integer(arrow_type) else str
    return kinds


def partition_value(path: str, name: str) -> str:
    """The value of partition ``name`` in a file's path."""
    return next(s.split("=", 1)[1] for s in path.split("/") if s.startswith(f"{name}="))


def csv_options() -> Any:
    """pyarrow's CSV conversion as pandas reads a file: an empty cell is a gap, in a text column
    too (pyarrow's default reads it as "")."""
    import pyarrow.csv as pacsv

    return pacsv.ConvertOptions(strings_can_be_null=True)


def read_sample(path: str, fmt: str) -> Any:
    """The first rows of one input file as a pandas DataFrame, typed as Ray Data will hand them
    to the model (both read through pyarrow)."""
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    filesystem, inner = file_system(path)
    try:
        if fmt == "parquet":
            parquet = pq.ParquetFile(filesystem.open_input_file(inner))
            table = next(parquet.iter_batches(batch_size=SAMPLE_ROWS), None)
            sample = (table or parquet.schema_arrow.empty_table()).to_pandas()
        else:
            with filesystem.open_input_stream(inner) as stream:
                reader = pacsv.open_csv(stream, convert_options=csv_options())
                batch = reader.read_next_batch()
                sample = batch.to_pandas().head(SAMPLE_ROWS)
    except StopIteration:
        raise PredictError(f"input {path}: the file holds no rows") from None
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        raise PredictError(f"input {path}: cannot read it as {fmt}: {exc}") from None
    if sample.empty:
        raise PredictError(f"input {path}: the file holds no rows")
    return sample


def load_bundle(model: str) -> ModelBundle:
    """The model's weights and config: from MLflow for a model URI, else from a folder holding
    ``weights.safetensors`` and ``model_config.json`` (or a downloaded MLflow model, whose
    ``artifacts/final_model`` holds them)."""
    from orchestrator.serving.model_source import parse_model_uri, resolve_bundle

    if model.strip().startswith(URI_PREFIXES):
        return resolve_bundle(parse_model_uri(model))
    folder = Path(model).expanduser()
    if not folder.is_dir():
        raise PredictError(
            f"model {model!r} is neither a model URI (models:/NAME@ALIAS, models:/NAME/VERSION, "
            f"runs:/RUN_ID/model, models:/m-ID) nor a folder holding {WEIGHTS_FILE} and "
            f"{CONFIG_FILE}"
        )
    for candidate in (folder, folder / "artifacts" / FINAL_MODEL_DIR):
        if (candidate / WEIGHTS_FILE).is_file() and (candidate / CONFIG_FILE).is_file():
            candidate = candidate.resolve()
            return ModelBundle.from_directory(
                candidate, uri=str(candidate), name=folder.resolve().name, version=None, run_id=None
            )
    raise PredictError(f"model folder {model} holds no {WEIGHTS_FILE} and {CONFIG_FILE}")
