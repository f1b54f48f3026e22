"""Where data comes from: a bundled data set by name (``trainers.data.bundled``, scikit-learn's
and palmerpenguins' tables), or files: a .csv or .parquet file, a folder or glob of parts (hive
partitions included), local or at a URI (``s3://``, ``gs://``, ``file://``), read with
``pyarrow.dataset``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trainers.data.bundled import co2_monthly, digits_rows
from trainers.errors import DataError

if TYPE_CHECKING:
    import pandas as pd

# pandas and scikit-learn are imported where they are used: workers receive a ready Dataset and
# Split, and skipping those imports shortens every worker's start (about 1 s each).
SKLEARN = ("digits", "breast_cancer", "wine", "diabetes")  # scikit-learn's load_<name>
BUNDLED_LABELS = {name: "target" for name in SKLEARN} | {
    "penguins": "species",
    "digits_rows": "digit",
    "co2": "co2",
}
BUNDLED = tuple(BUNDLED_LABELS)


def read_table(source: str) -> pd.DataFrame:
    """Read a bundled data set by name, or a .csv/.parquet file by path."""
    import pandas as pd

    if source == "digits_rows":
        return digits_rows()
    if source == "co2":
        return co2_monthly()
    if source == "penguins":  # palmerpenguins ships the CSV: 344 rows, strings and gaps
        from importlib import metadata

        # Located, not imported: the package's __init__ needs pkg_resources.
        csv = metadata.distribution("palmerpenguins").locate_file(
            "palmerpenguins/data/penguins.csv"
        )
        return pd.read_csv(str(csv))
    if source in SKLEARN:
        from sklearn import datasets

        return getattr(datasets, f"load_{source}")(as_frame=True).frame
    return read_files(source)


FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
GLOB_CHARACTERS = frozenset("*?[")
PARTS_ATTR = "redblue_parts"  # a frame read from files: [(part path below the source, rows)]


def is_uri(source: str) -> bool:
    """``s3://...``, ``gs://...``, ``file://...``: anything with a scheme ``pyarrow.fs`` opens."""
    return "://" in source


@dataclass(frozen=True)
class Parts:
    """A source's files, opened as one ``pyarrow.dataset`` (schemas checked, nothing read)."""

    source: str
    filesystem: Any  # a pyarrow.fs.FileSystem (picklable: a node opens it with its own keys)
    base: str  # the folder hive partitions are named under
    paths: tuple[str, ...]  # the data files, sorted
    format: str  # csv or parquet
    dataset: Any  # pyarrow.dataset.Dataset over all of them
    partitions: Any  # the hive partition fields (a pyarrow schema; empty without partitions)

    def part(self, path: str) -> Any:
        """A dataset over one of the files, with the whole source's schema and partitions."""
        import pyarrow.dataset as ds

        return ds.dataset(
            [path],
            schema=self.dataset.schema,
            format=self.format,
            filesystem=self.filesystem,
            partitioning=ds.partitioning(self.partitions, flavor="hive"),
            partition_base_dir=self.base,
        )


def open_parts(source: str) -> Parts:
    """A .csv or .parquet file, a folder of parts (hive partitions included: ``year=2024/``
    becomes a column), or a glob of parts, local or at a URI (``s3://``, ``gs://``,
    ``file://``, anything ``pyarrow.fs`` opens), opened without reading its rows. Parts must
    share one format and one schema; DataError otherwise."""
    import pyarrow as pa
    import pyarrow.dataset as ds

    filesystem, path, paths = _parts(source)
    suffixes = sorted({Path(path).suffix.lower() or "(no suffix)" for path in paths})
    formats = {FORMATS.get(suffix) for suffix in suffixes}
    if None in formats or len(formats) != 1:
        raise DataError(
            f"data.source {source!r}: every part must be .csv or .parquet, all of one kind "
            f"(found {', '.join(suffixes)})"
        )
    base, file_format = _base_dir(path, paths), str(formats.pop())
    try:
        dataset = ds.dataset(
            paths,
            format=file_format,
            filesystem=filesystem,
            partitioning=ds.HivePartitioning.discover(infer_dictionary=False),
            partition_base_dir=base,
        )
        _check_schemas(source, dataset)
    except DataError:
        raise
    except Exception as exc:  # any parser or reading error is a property of the user's data
        raise DataError(f"cannot read data.source {source!r}: {exc}") from exc
    held = set(next(iter(dataset.get_fragments())).physical_schema.names)
    partitions = pa.schema([field for field in dataset.schema if field.name not in held])
    return Parts(source, filesystem, base, tuple(paths), file_format, dataset, partitions)


def read_files(source: str) -> pd.DataFrame:
    """All rows of :func:`open_parts`'s files, in the order of their paths; the frame's
    ``attrs[PARTS_ATTR]`` says how many rows each part has (a row's key: ``data.split``)."""
    import pyarrow as pa

    parts = open_parts(source)
    try:
        batches, rows = [], dict.fromkeys(parts.paths, 0)
        for tagged in parts.dataset.scanner().scan_batches():  # in the order of the parts
            batches.append(tagged.record_batch)
            rows[tagged.fragment.path] += tagged.record_batch.num_rows
        frame = pa.Table.from_batches(batches, schema=parts.dataset.schema).to_pandas()
    except Exception as exc:  # any parser or reading error is a property of the user's data
        raise DataError(f"cannot read data.source {source!r}: {exc}") from exc
    frame.attrs[PARTS_ATTR] = [(relative_path(parts.base, p), rows[p]) for p in parts.paths]
    return frame


def relative_path(base: str, path: str) -> str:
    """A part's path below the source's folder (a row's key names it: ``data.split: hash``)."""
    return path[len(base) :].lstrip("/") if path.startswith(base) else path


def _parts(source: str) -> tuple[object, str, list[str]]:
    """(the filesystem, the path in it, the data files of ``source``, sorted); DataError when
    there are none."""
    import pyarrow.fs as pafs

    try:
        if is_uri(source):
            filesystem, path = pafs.FileSystem.from_uri(source)
        else:
            filesystem, path = pafs.LocalFileSystem(), str(Path(source).expanduser())
        if GLOB_CHARACTERS & set(path):
            return filesystem, path, _glob(filesystem, path, source)
        info = filesystem.get_file_info(path)
        if info.type == pafs.FileType.File:
            return filesystem, path, [path]
        if info.type == pafs.FileType.Directory:
            selector = pafs.FileSelector(path, recursive=True)
            files = [i.path for i in filesystem.get_file_info(selector) if _is_data_file(i)]
            if not files:
                raise DataError(f"data.source {source!r} is a folder with no data files in it")
            return filesystem, path, sorted(files)
        raise _not_found(source, filesystem, path)
    except DataError:
        raise
    except Exception as exc:  # an unreachable bucket, a refused credential, a bad URI
        raise DataError(f"cannot reach data.source {source!r}: {exc}") from exc


def _not_found(source: str, filesystem, path: str) -> DataError:
    """The error for a source with nothing at its path: its bucket missing, or the file or
    folder."""
    import pyarrow.fs as pafs

    where = source if is_uri(source) else str(Path(source).expanduser().resolve())
    bucket = path.split("/", 1)[0]  # an object store's: the first part of the path
    in_a_bucket = is_uri(source) and not source.startswith("file://")
    if in_a_bucket and filesystem.get_file_info(bucket).type == pafs.FileType.NotFound:
        return DataError(
            f"cannot reach data.source {source!r}: bucket {bucket} does not exist (or these "
            "credentials cannot see it)"
        )
    if Path(path).suffix.lower() in FORMATS:
        return DataError(f"data file not found: {where}")
    return DataError(
        f"data source not found: {where} (a bundled data set is one of {', '.join(BUNDLED)})"
    )


def _glob(filesystem, pattern: str, source: str) -> list[str]:
    """The files matching ``pattern`` (``*`` within a path part, ``**`` across parts)."""
    import fnmatch

    import pyarrow.fs as pafs

    parts = pattern.split("/")
    fixed = next(i for i, part in enumerate(parts) if GLOB_CHARACTERS & set(part))
    base = "/".join(parts[:fixed]) or "/"
    selector = pafs.FileSelector(base, recursive=True, allow_not_found=True)
    files = sorted(
        info.path
        for info in filesystem.get_file_info(selector)
        if _is_data_file(info) and fnmatch.fnmatch(info.path, pattern)
    )
    if not files:
        raise DataError(f"data.source {source!r} matches no file")
    return files


def _is_data_file(info) -> bool:
    """A file, not a marker (``_SUCCESS``) or a hidden one (``.crc``)."""
    import pyarrow.fs as pafs

    name = info.base_name
    return info.type == pafs.FileType.File and not name.startswith(("_", "."))


def _base_dir(path: str, files: list[str]) -> str:
    """The folder hive partitions are named under: a folder source itself, a glob's fixed part,
    a single file's folder (whose own path names no partition)."""
    if files == [path]:
        return path.rsplit("/", 1)[0]
    parts = path.split("/")
    fixed = next((i for i, part in enumerate(parts) if GLOB_CHARACTERS & set(part)), len(parts))
    return "/".join(parts[:fixed])


def _check_schemas(source: str, dataset) -> None:
    """Every part has the first part's columns and types (pyarrow would otherwise take the
    first part's schema and fill or drop the others' columns silently)."""
    fragments = list(dataset.get_fragments())
    first = fragments[0].physical_schema
    for fragment in fragments[1:]:
        schema = fragment.physical_schema
        if schema.names != first.names or schema.types != first.types:
            raise DataError(
                f"data.source {source!r}: the parts' columns differ: {fragment.path} has "
                f"{_columns(schema)}, {fragments[0].path} has {_columns(first)}"
            )


def _columns(schema) -> str:
    return ", ".join(f"{field.name} ({field.type})" for field in schema)
