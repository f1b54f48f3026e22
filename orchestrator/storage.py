"""Where runs keep checkpoints: a local folder, or a URI every node reaches (``s3://``,
``gs://``, ``file://`` ...), read and written through pyarrow's filesystems as Ray Train does.

Paths are plain strings: ``pathlib`` would turn ``s3://bucket/x`` into ``s3:/bucket/x``.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow.fs as pafs

OBJECT_STORES = ("s3", "gs", "gcs", "abfs", "abfss")  # URIs that start with a bucket


class StorageError(ValueError):
    """The storage cannot be reached as configured; the message says why."""


def is_uri(path: str) -> bool:
    return "://" in path


def scheme(path: str) -> str:
    """``s3`` for ``s3://bucket/x``; empty for a local path."""
    return path.split("://", 1)[0].lower() if is_uri(path) else ""


def absolute(path: str, root: Path) -> str:
    """A URI as given; a local path made absolute against ``root``."""
    return path if is_uri(path) else str((root / Path(path).expanduser()).resolve())


def join(base: str, *parts: str) -> str:
    if is_uri(base):
        return "/".join([base.rstrip("/"), *parts])
    return str(Path(base, *parts))


def parent(path: str) -> str:
    if is_uri(path):
        return path.rstrip("/").rsplit("/", 1)[0]
    return str(Path(path).parent)


def on_same_storage(path: str, base: str) -> str:
    """``path`` as a URI on ``base``'s file system: Ray reports paths inside a file system
    without its scheme (``bucket/x`` for ``s3://bucket/x``)."""
    if is_uri(base) and not is_uri(path):
        return f"{scheme(base)}://{path}"
    return path


def _resolve(path: str) -> tuple[pafs.FileSystem, str]:
    if is_uri(path):
        return pafs.FileSystem.from_uri(path)
    return pafs.LocalFileSystem(), path


def check_reachable(path: str) -> None:
    """For a URI: its file system opens and, on an object store, its bucket (the first path
    part) exists, so that a missing bucket or credential is reported before any run starts,
    not by a failing worker."""
    if not is_uri(path):
        return
    try:
        filesystem, inner = _resolve(path)
        bucket = inner.strip("/").split("/", 1)[0]
        if scheme(path) not in OBJECT_STORES:
            return
        found = filesystem.get_file_info(bucket)
    except Exception as exc:  # pyarrow raises OSError, ArrowInvalid, ... with a clear text
        raise StorageError(f"run.storage_path {path}: cannot open it: {exc}") from None
    if found.type == pafs.FileType.NotFound:
        raise StorageError(f"run.storage_path {path}: bucket {bucket} does not exist")


def write_text(path: str, text: str) -> None:
    filesystem, inner = _resolve(path)
    filesystem.create_dir(inner.rsplit("/", 1)[0], recursive=True)
    with filesystem.open_output_stream(inner) as stream:
        stream.write(text.encode())


def subfolders(path: str, prefix: str = "") -> list[str]:
    """The folders directly in ``path`` whose names start with ``prefix`` (full paths)."""
    filesystem, inner = _resolve(path)
    selector = pafs.FileSelector(inner, allow_not_found=True)
    return [
        join(path, info.base_name)
        for info in filesystem.get_file_info(selector)
        if info.type == pafs.FileType.Directory and info.base_name.startswith(prefix)
    ]


def delete_folder(path: str) -> None:
    filesystem, inner = _resolve(path)
    filesystem.delete_dir(inner)


def base_name(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[-1]
