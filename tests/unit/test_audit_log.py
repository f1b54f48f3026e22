"""The audit log: size-based rotation shared by replicas, and the deploy-time path check."""

import json

import pytest

from orchestrator.serving.deploy import AuditLogError, audit_path
from serve_apps.guard import AuditLog, audit_log_at
from tests.unprivileged import call_unprivileged, unprivileged_folder


def test_rotates_by_size_and_keeps_the_newest_backups(tmp_path):
    path = tmp_path / "audit.jsonl"
    first, second = (AuditLog(path, max_bytes=2048, backups=2) for _ in range(2))
    for n in range(200):  # two writers, as two replicas sharing the file
        (first if n % 2 else second).write({"n": n, "pad": "x" * 40})
    files = sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock"))
    assert files == ["audit.jsonl", "audit.jsonl.1", "audit.jsonl.2"]
    assert all(p.stat().st_size <= 2048 + 100 for p in tmp_path.glob("audit.jsonl*"))
    newest = [json.loads(line)["n"] for line in path.read_text().splitlines()]
    older = [
        json.loads(line)["n"] for line in (tmp_path / "audit.jsonl.1").read_text().splitlines()
    ]
    assert newest[-1] == 199 and max(older) < min(newest)  # nothing lost between the two
    assert oct(path.stat().st_mode & 0o777) == "0o600"


def test_deploy_checks_the_path_it_will_write(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert audit_path("off", local=True) is None
    assert audit_path("logs/a.jsonl", local=True) == str(tmp_path / "logs" / "a.jsonl")
    (tmp_path / "adir").mkdir()
    with pytest.raises(AuditLogError, match="is a directory"):
        audit_path("adir", local=True)
    with unprivileged_folder() as folder:  # as a user the mode stops (root writes anywhere)
        (folder / "ro").mkdir(mode=0o500)
        with pytest.raises(AuditLogError, match="cannot write"):
            call_unprivileged(audit_path, "ro/a.jsonl", local=True, cwd=folder)
    # To a cluster: passed on, and each replica resolves a relative path on its own node.
    assert audit_path("logs/a.jsonl", local=False) == "logs/a.jsonl"
    assert audit_log_at("logs/a.jsonl") == audit_log_at("~/.redblue/logs/a.jsonl")


def test_an_empty_audit_log_setting_is_refused():
    from pydantic import ValidationError

    from serve_apps.settings import ServeSection

    with pytest.raises(ValidationError, match="audit log's file path, or off"):
        ServeSection(audit_log="")
