"""Deploy decisions without Ray: model URIs, the API keys, the Serve config file, the prefix."""

from __future__ import annotations

import base64
import os
import secrets
import stat
from types import SimpleNamespace

import pytest

from orchestrator.config import ConfigError, validate
from orchestrator.serving.api_keys import (
    ApiKeyError,
    ApiKeys,
    key_problem,
    obtain_keys,
    remove_from_environment,
)
from orchestrator.serving.application import IMPORT_PATH, DeployArgs, serve_config
from orchestrator.serving.check import curl_line, summary_rows
from orchestrator.serving.model_source import ModelSourceError, parse_model_uri
from orchestrator.serving.rollout import Deployment, base_url
from serve_apps.guard import key_digest, key_id
from serve_apps.settings import ServeSection
from tests.helpers import deploy_in_a_new_process


@pytest.mark.parametrize(
    "text, kind, parts",
    [
        ("models:/digits@champion", "alias", {"name": "digits", "alias": "champion"}),
        ("models:/my-model.v2/12", "version", {"name": "my-model.v2", "version": "12"}),
        ("runs:/" + "a" * 32 + "/model", "run", {"run_id": "a" * 32, "path": "model"}),
        ("models:/m-" + "b" * 32, "logged", {"model_id": "m-" + "b" * 32}),
    ],
)
def test_model_uris_are_parsed(text, kind, parts):
    uri = parse_model_uri(text)
    assert uri.kind == kind and uri.parts == parts


@pytest.mark.parametrize(
    "text",
    ["digits", "models:/digits", "models:/digits@", "models:/digits/v1", "runs:/xyz/model", ""],
)
def test_malformed_model_uris_are_refused_with_the_accepted_forms(text):
    with pytest.raises(ModelSourceError, match="models:/NAME@ALIAS"):
        parse_model_uri(text)


STRONG = "Zk3v_Q9x-Lr2mT8wYb4NcJ"  # 22 base64url characters: 132 bits
OTHER = "3f9c2a7e1b4d8f6a0c5e9b2d7a1f4c8e"  # 32 hex digits: 128 bits


@pytest.mark.parametrize(
    "key",
    [
        STRONG,
        OTHER,
        secrets.token_urlsafe(16),
        secrets.token_urlsafe(32),
        secrets.token_hex(16).upper(),
        base64.b64encode(bytes(range(7, 23))).decode(),  # 22 characters and '==' padding
        "a-test-key-for-the-cluster-deployment",  # accepted by form (randomness is not visible)
    ],
)
def test_keys_that_can_carry_128_bits_are_accepted(key):
    assert key_problem(key) is None


@pytest.mark.parametrize(
    "key, reason",
    [
        ("a", "it is 1 hex digit (4 bits each)"),
        ("Zk3v_Q9x-Lr2mT8wYb4Nc", "21 characters long"),
        (OTHER[:31], "31 hex digits"),
        ("0123456789abcdef0123456789", "26 hex digits"),  # would pass as base64: 104 bits only
        ("z" * 40, "only 1 different character "),
        ("abcdefg" * 4, "only 7 different characters"),
        ("correct horse battery staple", "characters outside"),
        ("Zk3v_Q9x-Lr2mT8wYb4NcJ==x", "characters outside"),
        ("ключ-ключ-ключ-ключ-ключ-ключ", "characters outside"),
    ],
)
def test_keys_too_weak_or_malformed_are_refused(key, reason):
    assert reason in (key_problem(key) or "")


def test_several_keys_from_env_all_count_and_leave_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("MY_KEY", f" {STRONG} ,{OTHER},{STRONG}")
    keys = obtain_keys("MY_KEY")
    assert (keys.values, keys.source) == ((STRONG, OTHER), "env")
    assert keys.digests == [key_digest(STRONG), key_digest(OTHER)]
    assert keys.ids == [key_id(STRONG), key_id(OTHER)] and len(keys.ids[0]) == 12
    described = keys.describe()
    assert "2 keys from $MY_KEY" in described and keys.ids[1] in described
    assert STRONG not in described and OTHER not in described
    assert keys.shell_reference() == "${MY_KEY%%,*}"
    assert not (tmp_path / ".redblue").exists()
    monkeypatch.setenv("MY_KEY_FILE", "/elsewhere")
    remove_from_environment("MY_KEY")
    assert "MY_KEY" not in os.environ and "MY_KEY_FILE" not in os.environ


def test_keys_from_a_private_key_file(monkeypatch, tmp_path):
    path = tmp_path / "keys"
    path.write_text(f"# rotated 2026-11\n{OTHER}\n\n  {STRONG}  \n")
    path.chmod(0o600)
    monkeypatch.delenv("MY_KEY", raising=False)
    monkeypatch.setenv("MY_KEY_FILE", str(path))
    keys = obtain_keys("MY_KEY")
    assert (keys.values, keys.source, keys.path) == ((OTHER, STRONG), "env_file", path)
    assert f"from {path} ($MY_KEY_FILE" in keys.describe()
    assert keys.shell_reference() == f"$(grep -m1 '^[^#]' {path})"
    path.chmod(0o644)
    with pytest.raises(ApiKeyError, match=f"chmod 600 {path}"):
        obtain_keys("MY_KEY")


@pytest.mark.parametrize(
    "env, expected",
    [
        (
            {"MY_KEY": "a"},
            "$MY_KEY: the key is not accepted: it is 1 hex digit (4 bits each); a key needs",
        ),
        ({"MY_KEY": f"{STRONG},short"}, "$MY_KEY: key 2 of 2 is not accepted"),
        ({"MY_KEY": f"{STRONG},,{OTHER}"}, "$MY_KEY has an empty entry"),
        ({"MY_KEY": ","}, "$MY_KEY has an empty entry"),
        ({"MY_KEY": STRONG, "MY_KEY_FILE": "/x"}, "$MY_KEY and $MY_KEY_FILE are both set"),
        ({"MY_KEY_FILE": "/nonexistent/keys"}, "cannot read the key file /nonexistent/keys"),
    ],
)
def test_unusable_keys_are_refused_without_quoting_them(monkeypatch, env, expected):
    monkeypatch.delenv("MY_KEY", raising=False)
    monkeypatch.delenv("MY_KEY_FILE", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ApiKeyError) as raised:
        obtain_keys("MY_KEY")
    assert expected in str(raised.value)
    assert "short" not in str(raised.value) or "short" in expected


def test_key_is_generated_once_private_and_reused(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("MY_KEY", raising=False)
    monkeypatch.delenv("MY_KEY_FILE", raising=False)
    first = obtain_keys("MY_KEY")
    assert first.source == "generated" and len(first.first) >= 40
    assert key_problem(first.first) is None
    assert first.path is not None and stat.S_IMODE(first.path.stat().st_mode) == 0o600
    again = obtain_keys("MY_KEY")
    assert (again.values, again.source) == (first.values, "file")
    for keys in (first, again):
        assert first.first not in keys.describe()
        assert "--show-key" in keys.describe() and str(first.path) in keys.describe()
    assert first.shell_reference() == f"$(cat {first.path})"


def test_a_weak_key_exits_2_before_ray_or_mlflow_and_is_not_printed(tmp_path):
    cases = {
        "key": ({"REDBLUE_API_KEY": "hunter2"}, []),
        "prefix": ({"REDBLUE_API_KEY": STRONG}, ["--set", "serve.route_prefix=digits"]),
    }
    results = deploy_in_a_new_process(cases, tmp_path)
    code, output = results["key"]
    assert code == 2 and "hunter2" not in output, output
    assert "$REDBLUE_API_KEY: the key is not accepted: it is 7 characters long" in output
    assert "32 or more hex digits" in " ".join(output.split())
    code, output = results["prefix"]
    assert code == 2 and "serve.route_prefix" in output, output
    assert not results["ray imported"] and not results["mlflow imported"]


def test_serve_config_file_is_valid_and_holds_no_key():
    args = DeployArgs(
        model="models:/digits/3",
        name="digits",
        serve=ServeSection(port=9001),
        key_digests=[key_digest("secret-key")],
    )
    config = serve_config(args, {"MLFLOW_TRACKING_URI": "http://127.0.0.1:5000"})
    app = config["applications"][0]
    assert app["import_path"] == IMPORT_PATH and app["args"]["model"] == "models:/digits/3"
    assert config["http_options"] == {"host": "127.0.0.1", "port": 9001}
    assert "secret-key" not in str(config)
    assert DeployArgs.model_validate(app["args"]) == args  # what the builder reads back


@pytest.mark.parametrize(
    "serve, expected",
    [
        ({"port": 0}, "serve.port"),
        ({"ingress": "nginx"}, "serve.ingress"),
        ({"autoscaling": {"min_replicas": 3, "max_replicas": 2}}, "exceeds max_replicas"),
        ({"api_key_env": "not a name"}, "serve.api_key_env"),
        ({"max_body_bytes": 10}, "serve.max_body_bytes"),
        ({"route_prefix": "digits"}, "serve.route_prefix"),
        ({"route_prefix": "/digits/"}, "serve.route_prefix"),
        ({"route_prefix": "/a//b"}, "serve.route_prefix"),
        ({"route_prefix": "/a/../b"}, "serve.route_prefix"),
        ({"route_prefix": "/{name}"}, "serve.route_prefix"),
        ({"route_prefix": "/a b"}, "serve.route_prefix"),
        ({"route_prefix": ""}, "serve.route_prefix"),
    ],
)
def test_bad_serve_settings_are_refused(serve, expected):
    with pytest.raises(ConfigError, match=expected):
        validate({"serve": serve})


def test_serve_settings_are_not_training_params():
    cfg = validate({"serve": {"port": 9000}})
    assert not any(key.startswith("serve.") for key in cfg.flat())


@pytest.mark.parametrize("prefix", ["/", "/digits", "/team-a/digits.v2"])
def test_route_prefix_reaches_the_serve_config_and_the_url(prefix):
    serve = ServeSection(port=9001, route_prefix=prefix)
    args = DeployArgs(model="models:/d/1", name="d", serve=serve, key_digests=[key_digest(STRONG)])
    assert serve_config(args, {})["applications"][0]["route_prefix"] == prefix
    assert base_url(serve) == "http://127.0.0.1:9001" + ("" if prefix == "/" else prefix)


@pytest.mark.parametrize("show", [False, True])
def test_the_key_is_printed_only_with_show_key(tmp_path, show):
    path = tmp_path / "api-key"
    keys = ApiKeys((STRONG,), "generated", "REDBLUE_API_KEY", path)
    serve = ServeSection(route_prefix="/digits")
    args = DeployArgs(model="models:/d/1", name="d", serve=serve, key_digests=keys.digests)
    bundle = SimpleNamespace(label="d v1", uri="models:/d/1", run_id="r", test_metrics={})
    deployment = Deployment(args, bundle, base_url(serve))  # type: ignore[arg-type]
    text = str(summary_rows(deployment, keys, show_key=show))
    assert (STRONG in text) == show and str(path) in text
    assert "http://127.0.0.1:8000/digits/v1/predict" in text
    curl = curl_line(deployment, keys, {"inputs": [[0.0, 0.0, 0.0]]})
    assert STRONG not in curl and f"$(cat {path})" in curl and "/digits/v1/predict" in curl
    provided = ApiKeys((STRONG,), "env", "REDBLUE_API_KEY")
    assert STRONG not in str(summary_rows(deployment, provided, show_key=True))


@pytest.mark.parametrize(
    "model, named",
    [
        ({"name": "digits", "version": "3", "run_id": "1a2b3c4d5e"}, "(model digits v3)"),
        (
            {"name": "digits-gan", "version": None, "run_id": "ad99c4334c"},
            "(model digits-gan (run ad99c433))",
        ),
    ],
)
def test_a_checked_answer_names_the_version_or_the_run_that_gave_it(model, named):
    """`deploy --check` of a registered version names it; of a run's model, the run."""
    from types import SimpleNamespace

    from orchestrator.serving.check import describe_answer
    from serve_apps.requests.table import FORM

    body = {"predictions": [0], "model": model}
    response = SimpleNamespace(status_code=200, json=lambda: body)
    assert describe_answer(FORM, response).endswith(named)
