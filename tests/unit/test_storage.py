"""Storage paths: local folders and URIs are joined, listed and deleted alike."""

from __future__ import annotations

from pathlib import Path

from orchestrator import storage


def test_uris_keep_their_scheme_and_local_paths_become_absolute(tmp_path):
    assert storage.absolute("s3://bucket/runs", tmp_path) == "s3://bucket/runs"
    assert storage.absolute("runs", tmp_path) == str(tmp_path / "runs")
    assert storage.join("s3://bucket/runs/", "a", "b") == "s3://bucket/runs/a/b"
    assert storage.parent("s3://bucket/runs/a") == "s3://bucket/runs"
    assert storage.join(str(tmp_path), "a") == str(tmp_path / "a")
    assert storage.base_name("gs://bucket/runs/trial-1/") == "trial-1"
    assert storage.on_same_storage("bucket/x/ck", "s3://bucket/x") == "s3://bucket/x/ck"
    assert storage.on_same_storage("/data/x/ck", "file:///data/x") == "file:///data/x/ck"
    assert storage.on_same_storage("/data/x/ck", "/data/x") == "/data/x/ck"


def test_write_list_and_delete_through_a_file_uri(tmp_path):
    root = f"file://{tmp_path}"
    for name in ("trial-a", "trial-b", "other"):
        storage.write_text(storage.join(root, name, "checkpoint_0", "state.txt"), name)
    assert (tmp_path / "trial-a" / "checkpoint_0" / "state.txt").read_text() == "trial-a"
    found = sorted(storage.subfolders(root, "trial-"))
    assert found == [f"{root}/trial-a", f"{root}/trial-b"]
    storage.delete_folder(found[0])
    assert not (tmp_path / "trial-a").exists() and (tmp_path / "trial-b").exists()
    assert storage.subfolders(str(tmp_path / "missing")) == []
    assert Path(storage.join(str(tmp_path), "other")).is_dir()


def test_an_unreachable_storage_uri_is_refused_with_its_reason(tmp_path):
    import pytest

    storage.check_reachable(str(tmp_path / "not-yet"))  # a local folder is created when needed
    storage.check_reachable(f"file://{tmp_path}/runs")
    with pytest.raises(storage.StorageError, match="cannot open it"):
        storage.check_reachable("hdfs://127.0.0.1:1/runs")
