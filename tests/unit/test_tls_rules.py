"""HTTPS for `redblue deploy` without Ray: settings, file checks, URLs, Serve options, HAProxy."""

from __future__ import annotations

import os
import subprocess
from types import SimpleNamespace

import pytest

from orchestrator.config import ConfigError, validate
from orchestrator.serving.api_keys import ApiKeys
from orchestrator.serving.application import DeployArgs, serve_config
from orchestrator.serving.check import curl_line, summary_rows
from orchestrator.serving.rollout import Deployment, base_url, http_options
from orchestrator.serving.tls import client_verify, is_self_signed, tls_problem
from serve_apps.guard import key_digest
from serve_apps.settings import ServeSection
from tests.helpers import deploy_in_a_new_process
from tests.tls_certs import make_certificate
from tests.unprivileged import call_unprivileged, unprivileged_folder

STRONG = "Zk3v_Q9x-Lr2mT8wYb4NcJ"


@pytest.mark.parametrize(
    "serve, expected",
    [
        ({"tls_cert": "a.crt"}, "serve.tls_cert is set but serve.tls_key is not"),
        ({"tls_key": "a.key"}, "serve.tls_key is set but serve.tls_cert is not"),
        ({"host": "0.0.0.0"}, "serve.host 0.0.0.0 is not a loopback address"),
        ({"host": "192.168.1.10"}, "set serve.tls_cert and serve.tls_key"),
        ({"host": "my-server.example"}, "serve.allow_plaintext=true"),
    ],
)
def test_tls_settings_that_are_refused(serve, expected):
    with pytest.raises(ConfigError, match=expected):
        validate({"serve": serve})


@pytest.mark.parametrize(
    "serve",
    [
        {"host": "127.0.0.1"},
        {"host": "127.0.0.2"},
        {"host": "::1"},
        {"host": "localhost"},
        {"host": "0.0.0.0", "allow_plaintext": True},
        {"host": "0.0.0.0", "tls_cert": "a.crt", "tls_key": "a.key"},
    ],
)
def test_loopback_tls_or_an_explicit_plaintext_is_accepted(serve):
    validate({"serve": serve})


def test_a_plaintext_public_host_exits_2_before_ray_or_mlflow(tmp_path):
    key = {"REDBLUE_API_KEY": STRONG}
    cases = {
        "public": (key, ["--set", "serve.host=0.0.0.0"]),
        "half": (key, ["--set", "serve.tls_key=server.key"]),
    }
    results = deploy_in_a_new_process(cases, tmp_path)
    code, output = results["public"]
    assert code == 2, output
    assert "serve.host 0.0.0.0 is not a loopback address" in " ".join(output.split())
    code, output = results["half"]
    assert code == 2 and "serve.tls_key is set but serve.tls_cert is not" in output, output
    assert not results["ray imported"] and not results["mlflow imported"]


def test_certificate_files_are_checked(tmp_path):
    cert, key = make_certificate(tmp_path)
    other_cert, other_key = make_certificate(tmp_path, "other")
    assert tls_problem(str(cert), str(key)) is None
    assert "does not exist" in str(tls_problem(str(tmp_path / "no.crt"), str(key)))
    assert "serve.tls_key" in str(tls_problem(str(cert), str(tmp_path / "no.key")))
    assert "is not a file" in str(tls_problem(str(tmp_path), str(key)))
    assert "do not load" in str(tls_problem(str(cert), str(other_key)))  # not its key
    assert "do not load" in str(tls_problem(str(key), str(key)))  # no certificate
    encrypted = tmp_path / "encrypted.key"
    encrypted.write_text("-----BEGIN ENCRYPTED " + "PRIVATE KEY-----\nAAAA\n")  # not a key
    assert "is encrypted" in str(tls_problem(str(cert), str(encrypted)))
    with unprivileged_folder() as folder:  # as a user the mode stops (root reads anything)
        cert, key = make_certificate(folder)
        key.chmod(0)
        assert "not readable" in str(
            call_unprivileged(tls_problem, str(cert), str(key), cwd=folder)
        )


def test_a_missing_certificate_stops_a_local_deploy_with_exit_2(tmp_path, monkeypatch):
    from orchestrator.serving.deploy import run

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    serve = ServeSection(tls_cert="missing.crt", tls_key="missing.key", audit_log="off")
    bundle = SimpleNamespace(uri="models:/d/1", name="d", label="d v1")
    keys = ApiKeys((STRONG,), "env", "REDBLUE_TEST_UNUSED_KEY")
    code, result = run(serve, SimpleNamespace(), bundle, None, keys=keys)  # type: ignore[arg-type]
    assert code == 2 and "missing.crt" in result["error"]


def test_self_signed_is_told_apart_from_a_ca_issued_certificate(tmp_path):
    from cryptography.hazmat.primitives.asymmetric import ec

    cert, _ = make_certificate(tmp_path)
    issued, _ = make_certificate(
        tmp_path, "issued", issuer_key=ec.generate_private_key(ec.SECP256R1())
    )
    assert is_self_signed(str(cert)) and client_verify(str(cert)) == str(cert)
    assert not is_self_signed(str(issued)) and client_verify(str(issued)) is True


def test_urls_curl_line_and_serve_options_use_https(tmp_path):
    cert, key = make_certificate(tmp_path)
    serve = ServeSection(port=9443, route_prefix="/digits", tls_cert=str(cert), tls_key=str(key))
    keys = ApiKeys((STRONG,), "env", "REDBLUE_API_KEY")
    args = DeployArgs(model="models:/d/1", name="d", serve=serve, key_digests=keys.digests)
    assert base_url(serve) == "https://127.0.0.1:9443/digits"
    bundle = SimpleNamespace(label="d v1", uri="models:/d/1", run_id="r", test_metrics={})
    deployment = Deployment(args, bundle, base_url(serve))  # type: ignore[arg-type]
    rows = dict(summary_rows(deployment, keys))
    assert rows["endpoint"] == "https://127.0.0.1:9443/digits/v1/predict"
    assert str(cert) in rows["tls"] and "self-signed" in rows["tls"]
    curl = curl_line(deployment, keys, {"inputs": [[0.0, 0.0, 0.0]]})
    assert f"--cacert {cert} " in curl and "https://127.0.0.1:9443/digits/v1/predict" in curl
    tls = {"ssl_certfile": str(cert), "ssl_keyfile": str(key)}
    assert http_options(serve) == {"host": "127.0.0.1", "port": 9443, **tls}
    # Local HAProxy: Serve's own listeners stay on loopback; HAProxy's launcher does TLS.
    assert http_options(serve, local_haproxy=True) == {"host": "127.0.0.1", "port": 9443}
    config = serve_config(args, {})
    assert config["http_options"] == {"host": "127.0.0.1", "port": 9443, **tls}
    plain = ServeSection(port=9001)
    assert base_url(plain) == "http://127.0.0.1:9001"
    assert (
        "ssl_certfile"
        not in serve_config(
            DeployArgs(
                model="models:/d/1", name="d", serve=plain, key_digests=[key_digest(STRONG)]
            ),
            {},
        )["http_options"]
    )


RAY_LIKE_CONFIG = """global
    stats socket {folder}/admin.sock mode 666 level admin expose-fd listeners
defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend prometheus
    bind :{metrics}
    mode http
    http-request use-service prometheus-exporter if {{ path /metrics }}
    no log
frontend http_frontend
    bind 127.0.0.1:{port}
    default_backend none
backend none
    http-request return status 404
listen stats
  bind *:{stats}
  stats enable
"""


@pytest.mark.parametrize("host, bind", [("0.0.0.0", "*"), ("127.0.0.1", "127.0.0.1")])
def test_haproxy_launcher_puts_the_frontend_on_serve_host_with_the_certificate(
    tmp_path, monkeypatch, host, bind
):
    """The launcher rewrites the frontend line of the config Ray writes to serve.host with
    `ssl crt`, and the bundled HAProxy accepts the result (`haproxy -c`: loads the PEM)."""
    from orchestrator import environment
    from orchestrator.serving import ingress

    monkeypatch.setattr(os, "environ", dict(os.environ))  # prepare_serve_env sets variables
    for name in [n for n in os.environ if n.startswith("RAY_SERVE")]:
        del os.environ[name]
    cert, key = make_certificate(tmp_path)
    port = environment.free_port()
    folder = ingress.prepare_serve_env("haproxy", port=port, host=host, tls=(str(cert), str(key)))
    assert folder is not None
    try:
        pem = folder / "tls.pem"
        assert pem.stat().st_mode & 0o777 == 0o600
        assert pem.read_text() == cert.read_text() + key.read_text()
        config = folder / "ray" / "haproxy.cfg"
        config.parent.mkdir()
        config.write_text(
            RAY_LIKE_CONFIG.format(
                folder=folder,
                port=port,
                stats=os.environ["RAY_SERVE_HAPROXY_STATS_PORT"],
                metrics=os.environ["RAY_SERVE_HAPROXY_METRICS_PORT"],
            )
        )
        checked = subprocess.run(
            [os.environ["RAY_SERVE_HAPROXY_BINARY_PATH"], "-c", "-f", str(config)],
            capture_output=True,
            text=True,
            env=os.environ,
            timeout=60,
        )
        assert checked.returncode == 0, checked.stdout + checked.stderr
        text = config.read_text()
        assert f"    bind {bind}:{port} ssl crt {pem}\n" in text
        assert f"  bind 127.0.0.1:{os.environ['RAY_SERVE_HAPROXY_STATS_PORT']}\n" in text
    finally:
        ingress.stop_haproxy(folder)
