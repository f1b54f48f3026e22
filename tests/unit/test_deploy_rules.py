"""Deploy decisions without Ray: model URIs, the API key's source, the Serve config file."""

from __future__ import annotations

import stat

import pytest

from orchestrator.api_keys import obtain_key
from orchestrator.config import ConfigError, validate
from orchestrator.model_source import ModelSourceError, parse_model_uri
from orchestrator.serve_app import IMPORT_PATH, DeployArgs, serve_config
from serve_apps.guard import key_digest
from serve_apps.settings import ServeSection


@pytest.mark.parametrize(
    "text, kind, parts",
    [
        ("models:/digits@champion", "alias", {"name": "digits", "alias": "champion"}),
        ("models:/my-model.v2/12", "version", {"name": "my-model.v2", "version": "12"}),
        ("runs:/" + "a" * 32 + "/model", "run", {"run_id": "a" * 32, "path": "model"}),
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


def test_key_from_env_wins(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("MY_KEY", "from-env")
    key = obtain_key("MY_KEY")
    assert (key.value, key.source) == ("from-env", "env")
    assert not (tmp_path / ".redblue").exists()


def test_key_is_generated_once_private_and_reused(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("MY_KEY", raising=False)
    first = obtain_key("MY_KEY")
    assert first.source == "generated" and len(first.value) >= 40
    assert first.path is not None and stat.S_IMODE(first.path.stat().st_mode) == 0o600
    again = obtain_key("MY_KEY")
    assert (again.value, again.source) == (first.value, "file")
    assert "shown once" in first.describe("MY_KEY") and first.value not in again.describe("MY_KEY")


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
    ],
)
def test_bad_serve_settings_are_refused(serve, expected):
    with pytest.raises(ConfigError, match=expected):
        validate({"serve": serve})


def test_serve_settings_are_not_training_params():
    cfg = validate({"serve": {"port": 9000}})
    assert not any(key.startswith("serve.") for key in cfg.flat())
