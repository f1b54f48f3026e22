"""The audit log: size-based rotation shared by replicas, fields and lines cut to size,
unauthenticated requests counted per source, trusted proxies, the per-writer hash chains and
``redblue audit verify``, and the deploy-time path check."""

import asyncio
import json
import time

import pytest

from orchestrator.serving.deploy import AuditLogError, audit_path
from serve_apps.audit_chain import GENESIS, line_hash, log_files, verify
from serve_apps.audit_log import FIELD_BYTES, LINE_BYTES, AuditLog, audit_log_at, clip
from serve_apps.audit_refusals import MAX_SOURCES
from serve_apps.guard import Guard, KeyRing, key_digest, key_id
from serve_apps.proxies import Proxies
from tests.unprivileged import call_unprivileged, unprivileged_folder

KEY = "audit-unit-test-key"


def entries(*paths) -> list[dict]:
    return [json.loads(line) for path in paths for line in path.read_text().splitlines()]


async def _ok(scope, receive, send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


def guard(audit, **options) -> Guard:
    return Guard(_ok, keys=KeyRing([key_digest(KEY)]), max_body_bytes=1024, audit=audit, **options)


async def call(guard_app, path="/v1/model", headers=(), peer="127.0.0.1", method="GET") -> int:
    """One request through the guard, as an ASGI server would send it; its status."""
    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "root_path": "",
        "headers": [(b"content-length", b"0"), *headers],
        "client": (peer, 40000),
    }
    status = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        if message["type"] == "http.response.start":
            status.append(message["status"])

    await guard_app(scope, receive, send)
    return status[0]


AUTH = (b"authorization", f"Bearer {KEY}".encode())


def test_rotates_by_size_and_keeps_the_newest_backups(tmp_path):
    path = tmp_path / "audit.jsonl"
    first, second = (AuditLog(path, max_bytes=2048, backups=2) for _ in range(2))
    for n in range(200):  # two writers, as two replicas sharing the file
        (first if n % 2 else second).write({"n": n, "pad": "x" * 40})
    files = sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock"))
    assert files == ["audit.jsonl", "audit.jsonl.1", "audit.jsonl.2"]
    assert all(p.stat().st_size < 2048 + LINE_BYTES for p in tmp_path.glob("audit.jsonl*"))
    newest = [e["n"] for e in entries(path)]
    older = [e["n"] for e in entries(tmp_path / "audit.jsonl.1")]
    assert newest[-1] == 199 and max(older) < min(newest)  # nothing lost between the two
    assert oct(path.stat().st_mode & 0o777) == "0o600"


def test_rotation_keeps_each_writers_chain_across_files(tmp_path):
    path = tmp_path / "audit.jsonl"
    writers = [AuditLog(path, max_bytes=2048, backups=100) for _ in range(3)]
    for n in range(300):
        writers[n % 3].write({"n": n, "pad": "x" * 40})
    files = log_files(path)
    assert len(files) > 10 and files[-1] == path and files[0].name.endswith(f".{len(files) - 1}")
    verdict = verify(files)
    assert verdict.broken is None and verdict.lines == 300
    assert {w: (c.first_seq, c.seq, c.anchor) for w, c in verdict.chains.items()} == {
        w.writer: (0, 99, None) for w in writers
    }
    # With the oldest files rotated away, a writer is taken up mid-chain, and said so.
    (tmp_path / "kept").mkdir()
    kept = AuditLog(tmp_path / "kept" / "audit.jsonl", max_bytes=2048, backups=2)
    for n in range(40):
        kept.write({"n": n, "pad": "y" * 40})
    verdict = verify(log_files(kept.path))
    chain = verdict.chains[kept.writer]
    assert verdict.broken is None and chain.seq == 39 and chain.first_seq > 0 and chain.anchor


def _json_size(value: str) -> int:
    return len(json.dumps(value)) - 2


@pytest.mark.parametrize(
    "big",
    ["a" * 7000, "\x01" * 7000, "é" * 7000, "😈" * 7000, '"\\' * 3500, "/v1/" + "%00" * 2000],
)
def test_every_field_is_cut_to_256_bytes_and_every_line_to_1_kib(tmp_path, big):
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path)
    log.write({"time": "t", "path": big, "method": big, "request_id": big, "client": big})
    log.write({"a": big, "b": big, "c": big, "d": big, "e": big, "f": big, "g": big, "h": big})
    log.write({"path": "/v1/predict", "status": 200})
    raw = path.read_bytes().splitlines(keepends=True)
    assert all(len(line) <= LINE_BYTES for line in raw), [len(line) for line in raw]
    cut, *_, whole = entries(path)
    for entry in entries(path):
        for value in entry.values():
            assert not isinstance(value, str) or _json_size(value) <= FIELD_BYTES
    assert cut["truncated"] is True and big.startswith(cut["path"]) and cut["path"]
    assert whole["path"] == "/v1/predict" and "truncated" not in whole
    assert verify([path]).broken is None


@pytest.mark.parametrize(
    "value", ['"' * 128, '"' * 129, "a" * 128, "a" * 300, "\x01" * 50, "é" * 60, "a\x7f" * 64, ""]
)
def test_a_field_keeps_its_longest_start_that_fits(value):
    longest = max(n for n in range(len(value) + 1) if _json_size(value[:n]) <= FIELD_BYTES)
    assert clip(value) == value[:longest]


def test_a_request_with_7_kb_headers_writes_one_short_line(tmp_path):
    path = tmp_path / "audit.jsonl"
    app = guard(AuditLog(path))
    headers = [
        (b"x-forwarded-for", b"1," * 3500),
        (b"x-request-id", b"r" * 7000),
        (b"user-agent", b"u" * 7000),
        AUTH,
    ]
    assert asyncio.run(call(app, "/v1/" + "p" * 7000, headers, method="P" * 7000)) == 200
    (line,) = path.read_bytes().splitlines()
    entry = json.loads(line)
    assert len(line) < LINE_BYTES and entry["truncated"] is True
    assert len(entry["path"]) == FIELD_BYTES and len(entry["method"]) <= FIELD_BYTES
    assert len(entry["request_id"]) == 32  # not a sane id: a new one
    assert entry["peer"] == entry["client"] == "127.0.0.1"  # "1" is not an address
    assert "u" * 300 not in line.decode()


def test_requests_without_a_key_are_counted_per_source_and_interval(tmp_path):
    path = tmp_path / "audit.jsonl"
    now = [1_000_000.0]  # 40 s into an interval of 60 s
    audit = AuditLog(path, refusal_interval_s=60, clock=lambda: now[0])
    app = guard(audit, trusted_proxies=[])
    wrong = (b"authorization", b"Bearer not-the-key")

    async def traffic():
        for n in range(5):
            assert await call(app, f"/v1/a{n}", peer="203.0.113.1") == 401
            now[0] += 1
        assert await call(app, "/v1/b", [wrong], peer="203.0.113.2") == 401
        assert await call(app, "/v1/b", [wrong], peer="203.0.113.2") == 401
        assert await call(app, "/healthz", peer="203.0.113.2") == 200
        assert await call(app, "/v1/model", [AUTH], peer="203.0.113.1") == 200

    asyncio.run(traffic())
    written = entries(path)
    assert [(e["client"], e["path"], e["status"]) for e in written] == [
        ("203.0.113.1", "/v1/a0", 401),  # the first of each source and status, in full
        ("203.0.113.2", "/v1/b", 401),
        ("203.0.113.2", "/healthz", 200),
        ("203.0.113.1", "/v1/model", 200),  # with a key: always
    ]
    assert written[1]["key_id"] == key_id("not-the-key")
    now[0] += 60  # the interval is over: its summaries come before the next line
    asyncio.run(call(app, "/v1/model", [AUTH], peer="203.0.113.1"))
    *_, summary_a, summary_b, last = entries(path)
    assert summary_a == {
        **summary_a,
        "event": "unauthenticated",
        "client": "203.0.113.1",
        "status": 401,
        "count": 4,
        "paths_sample": ["/v1/a1", "/v1/a2", "/v1/a3"],
        "time": "1970-01-12T13:47:00.000+00:00",  # the interval's end: 1,000,020 s
    }
    assert summary_a["first"] < summary_a["last"]
    assert (summary_b["client"], summary_b["count"]) == ("203.0.113.2", 1)
    assert last["path"] == "/v1/model" and last["seq"] == summary_b["seq"] + 1
    # At most MAX_SOURCES sources are followed: the rest are counted under "other".
    for n in range(MAX_SOURCES + 500):
        asyncio.run(call(app, "/v1/x", peer=f"10.{n // 65536}.{n // 256 % 256}.{n % 256}"))
    audit.close()  # writes the interval's summaries so far
    flood = entries(path)[len(written) + 3 :]
    assert sum(1 for e in flood if "event" not in e) == MAX_SOURCES
    (other,) = [e for e in flood if e.get("client") == "other"]
    assert other["count"] == 500 and other["paths_sample"] == ["/v1/x"]
    assert verify([path]).broken is None


def test_x_forwarded_for_counts_only_from_a_trusted_proxy(tmp_path):
    path = tmp_path / "audit.jsonl"
    app = guard(AuditLog(path), trusted_proxies=["127.0.0.1", "10.0.0.0/8"])
    forwarded = (b"x-forwarded-for", b"192.0.2.66, 198.51.100.7, 10.1.2.3")

    async def traffic():
        await call(app, headers=[AUTH, forwarded], peer="203.0.113.9")  # not a proxy
        await call(app, headers=[AUTH, forwarded], peer="127.0.0.1")
        await call(app, headers=[AUTH, forwarded, (b"x-forwarded-for", b"10.9.9.9")])
        await call(app, headers=[AUTH, (b"x-forwarded-for", b"junk, 10.0.0.8")])

    asyncio.run(traffic())
    assert [(e["peer"], e["client"]) for e in entries(path)] == [
        ("203.0.113.9", "203.0.113.9"),
        ("127.0.0.1", "198.51.100.7"),  # the right-most address that is not a trusted proxy
        ("127.0.0.1", "198.51.100.7"),  # two headers are one list, in order
        ("127.0.0.1", "10.0.0.8"),  # not an address: the walk stops at the one after it
    ]
    loopback = Proxies()  # the default: 127.0.0.0/8 and ::1
    assert loopback.client("127.0.0.2", [b"192.0.2.1"]) == "192.0.2.1"
    assert loopback.client("::ffff:127.0.0.1", [b"2001:db8::1"]) == "2001:db8::1"
    assert loopback.client("::1", [b"192.0.2.1, 127.0.0.1"]) == "192.0.2.1"
    assert loopback.client("192.0.2.5", [b"127.0.0.1"]) == "192.0.2.5"
    assert Proxies([]).client("127.0.0.1", [b"192.0.2.1"]) == "127.0.0.1"


def test_trusted_proxies_must_be_addresses_or_networks():
    from orchestrator.config import ConfigError, defaults_with
    from serve_apps.settings import ServeSection

    assert ServeSection().trusted_proxies == ["127.0.0.0/8", "::1"]
    assert ServeSection(trusted_proxies=[" 10.1.2.3/8", "fd00::/8"]).trusted_proxies == [
        "10.1.2.3/8",
        "fd00::/8",
    ]
    with pytest.raises(ConfigError, match=r"serve\.trusted_proxies: '10\.0\.0\.0/33' is not an IP"):
        defaults_with(["serve.trusted_proxies=[127.0.0.1, 10.0.0.0/33]"])
    with pytest.raises(ConfigError, match=r"serve\.audit_refusal_interval_s"):
        defaults_with(["serve.audit_refusal_interval_s=0"])


def _chained_log(tmp_path):
    """Two writers' interleaved lines: A0 B0 A1 B1 ... (twelve lines)."""
    path = tmp_path / "audit.jsonl"
    a, b = AuditLog(path), AuditLog(path)
    for n in range(6):
        a.write({"n": n, "status": 200})
        b.write({"n": n, "status": 200})
    return path, a, b


def _rewrite(path, lines: list[str]) -> None:
    path.write_text("".join(line + "\n" for line in lines))


def test_the_chain_verifies_and_finds_an_edited_a_deleted_and_a_moved_line(tmp_path):
    path, a, b = _chained_log(tmp_path)
    intact = verify([path])
    assert (
        intact.broken is None and intact.lines == 12 and set(intact.chains) == {a.writer, b.writer}
    )
    first = json.loads(path.read_text().splitlines()[0])
    assert first["start"] is True and first["prev"] == GENESIS and first["seq"] == 0
    original = path.read_text().splitlines()

    def broken(lines):
        _rewrite(path, lines)
        found = verify([path]).broken
        assert found is not None and found.file == str(path)
        return found.line, found.writer, found.reason

    edited = original.copy()
    edited[4] = edited[4].replace('"status":200', '"status":401')  # A2
    assert broken(edited) == (5, a.writer, "seq 2: the hash does not match the line (edited)")

    resealed = json.loads(original[4])  # the edit with its hash made again: A3 shows it
    resealed["status"] = 401
    del resealed["hash"]
    resealed["hash"] = line_hash(resealed)
    assert broken([*original[:4], json.dumps(resealed), *original[5:]]) == (
        7,
        a.writer,
        "seq 3: prev is not the hash of seq 2",
    )
    deleted = original[:7] + original[8:]  # B3 gone: B4 (now line 9) follows B2
    assert broken(deleted) == (9, b.writer, "seq 4 follows seq 2: 1 line(s) missing or moved")
    moved = original.copy()
    moved[2], moved[6] = moved[6], moved[2]  # A1 and A3 swapped
    assert broken(moved) == (3, a.writer, "seq 3 follows seq 0: 2 line(s) missing or moved")
    assert broken([*original, original[-1]])[2] == "seq 5 comes after seq 5: repeated or moved"
    assert broken(["{not json", *original])[:2] == (1, None)
    # Lines of different writers may interleave in any order.
    _rewrite(path, [original[1], original[0], *original[2:]])
    assert verify([path]).broken is None


def test_audit_verify_exits_0_1_or_2(tmp_path):
    from typer.testing import CliRunner

    from orchestrator.cli import app

    path, a, _ = _chained_log(tmp_path)
    ok = CliRunner().invoke(app, ["audit", "verify", str(path)])
    assert ok.exit_code == 0, ok.output
    assert "12 lines, 2 writers, chain intact" in ok.stdout and a.writer in ok.stdout
    lines = path.read_text().splitlines()
    _rewrite(path, lines[:2] + lines[3:])  # A1 gone
    bad = CliRunner().invoke(app, ["audit", "verify", str(path)])
    assert bad.exit_code == 1 and "chain intact" not in bad.output
    assert f"{path}:4: writer {a.writer}: seq 2 follows seq 0" in " ".join(bad.stderr.split())
    missing = CliRunner().invoke(app, ["audit", "verify", str(tmp_path / "nope.jsonl")])
    assert missing.exit_code == 2 and "no such audit log file" in missing.stderr


FLOOD = 100_000


def test_100000_unauthenticated_requests_with_7_kb_headers_leave_a_keys_line_in_the_log(tmp_path):
    """The default retention (50 MiB, 5 backups) and interval: a flood of requests without a
    key, each with a 7 KB path and a 7 KB X-Forwarded-For, half from a proxy on loopback naming a
    new client each time, half from a new peer each time, does not push the line of the request
    before it out of the log."""
    path = tmp_path / "audit.jsonl"
    audit = AuditLog(path)
    app = guard(audit)
    long_path = "/v1/predict/" + "p" * 7000
    junk = b"x" * 7000
    keyed = (b"x-request-id", b"the-last-keyed-request")

    async def flood():
        assert await call(app, "/v1/predict", [AUTH, keyed], peer="192.0.2.10") == 200
        for n in range(FLOOD):
            address = f"{n // 65536}.{n // 256 % 256}.{n % 256}"
            if n % 2:  # through the proxy, which forwards what the client wrote, plus its address
                forwarded = junk[:-20] + f",198.{address}".encode()
                headers = [(b"x-forwarded-for", forwarded), (b"authorization", b"Bearer wrong")]
                peer = "127.0.0.1"
            else:
                headers, peer = [(b"x-forwarded-for", junk)], f"100.{address}"
            assert await call(app, long_path, headers, peer=peer) == 401

    started = time.perf_counter()
    asyncio.run(flood())
    audit.close()
    seconds = time.perf_counter() - started
    files = log_files(path)
    size = sum(p.stat().st_size for p in files)
    written = entries(*files)
    print(f"\n{FLOOD} requests in {seconds:.1f} s; audit log {size} bytes, {len(written)} lines")
    assert any(e.get("request_id") == "the-last-keyed-request" for e in written)
    summaries = [e for e in written if e.get("event") == "unauthenticated"]
    assert len(written) - len(summaries) - 1 + sum(e["count"] for e in summaries) == FLOOD
    assert size < 5 * 1024 * 1024 and files == [path]
    assert max(len(line) for line in path.read_bytes().splitlines(keepends=True)) <= LINE_BYTES
    assert verify(files).broken is None


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
