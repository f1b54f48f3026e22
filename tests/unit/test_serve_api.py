"""The prediction API over HTTP (httpx against the ASGI app, no Ray): auth, limits, bad input."""

from __future__ import annotations

import json

import httpx
import numpy as np
import pytest

from serve_apps.guard import KeyRing, key_digest, key_id
from serve_apps.local_server import local_api
from serve_apps.model_bundle import ModelBundle
from serve_apps.settings import ServeSection
from tests.helpers import sample_rows, saved_model
from trainers.models import predict

KEY = "unit-test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> ModelBundle:
    directory = saved_model(tmp_path_factory.mktemp("model"), seed=3)
    return ModelBundle.from_directory(
        directory,
        uri="models:/unit/1",
        name="unit",
        version="1",
        run_id="r" * 32,
        test_metrics={"test_accuracy": 0.5},
    )


@pytest.fixture()
def audit_file(tmp_path):
    return tmp_path / "audit.jsonl"


@pytest.fixture()
def client(bundle, audit_file):
    settings = ServeSection(max_rows=10, max_body_bytes=4096)
    api = local_api(bundle, settings, [key_digest(KEY)], audit_file)
    transport = httpx.ASGITransport(app=api)
    return httpx.AsyncClient(transport=transport, base_url="http://test")


async def post(client, body, headers=AUTH, **kwargs):
    if isinstance(body, (dict, list)):
        body = json.dumps(body)
    headers = {"content-type": "application/json", **headers}
    return await client.post("/v1/predict", content=body, headers=headers, **kwargs)


def error_of(response, status: int) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "message"}
    return body["message"]


@pytest.mark.anyio
async def test_predictions_equal_in_process_predictions(client, bundle):
    rows = sample_rows(5)
    response = await post(client, {"inputs": rows.tolist()})
    assert response.status_code == 200
    body = response.json()
    model, spec = bundle.load()
    labels, probabilities = predict(model, spec, rows)
    assert body["predictions"] == labels.tolist()
    np.testing.assert_allclose(body["probabilities"], probabilities, rtol=1e-5)
    assert body["model"] == {"name": "unit", "version": "1", "run_id": "r" * 32}


@pytest.mark.anyio
async def test_records_give_the_same_answer_as_inputs(client):
    rows = sample_rows(3)
    records = [{f"f{i}": float(v) for i, v in reversed(list(enumerate(row)))} for row in rows]
    by_inputs = (await post(client, {"inputs": rows.tolist()})).json()
    by_records = (await post(client, {"records": records})).json()
    assert by_records["predictions"] == by_inputs["predictions"]


@pytest.mark.anyio
@pytest.mark.parametrize(
    "headers, expected",
    [
        ({}, "Authorization: Bearer"),
        ({"Authorization": "Bearer wrong-key"}, "not valid"),
        ({"Authorization": f"Basic {KEY}"}, "Authorization: Bearer"),
        ({"Authorization": "Bearer "}, "Authorization: Bearer"),
    ],
)
async def test_missing_or_wrong_key_is_401(client, headers, expected):
    response = await post(client, {"inputs": sample_rows(1).tolist()}, headers=headers)
    assert expected in error_of(response, 401)
    assert response.headers["www-authenticate"] == "Bearer"
    info = await client.get("/v1/model", headers=headers)
    assert info.status_code == 401


@pytest.mark.anyio
async def test_auth_comes_before_parsing(client):
    response = await post(client, "{not json", headers={})
    assert response.status_code == 401


@pytest.mark.anyio
async def test_health_needs_no_key_and_model_info_does(client):
    health = await client.get("/healthz")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    info = (await client.get("/v1/model", headers=AUTH)).json()
    assert info["num_features"] == 8 and info["classes"] == ["a", "b", "c"]
    assert info["feature_names"][:2] == ["f0", "f1"] and info["task"] == "classification"
    assert info["test_metrics"] == {"test_accuracy": 0.5}


@pytest.mark.anyio
@pytest.mark.parametrize(
    "body, expected",
    [
        ('{"inputs": [[1, 2', "malformed JSON"),
        ("[]", "must be a JSON object"),
        ("", "must be a JSON object"),
        ("{}", "exactly one of 'inputs' or 'records'"),
        ({"inputs": [[1.0] * 8], "records": [{}]}, "exactly one"),
        ({"inputs": [[1.0] * 8], "extra": 1}, "unknown field 'extra'"),
        ({"inputs": []}, "no rows"),
        ({"records": []}, "no rows"),
        ({"inputs": [[1.0] * 7]}, "inputs[0] has 7 features; the model takes 8"),
        ({"inputs": [[1.0] * 8, [1.0] * 9]}, "inputs[1] has 9 features"),
        ({"inputs": [[1.0] * 8] * 11}, "11 rows is more than the limit of 10"),
        ({"inputs": [["x"] + [1.0] * 7]}, "inputs[0][0]"),
        ({"inputs": [1, 2]}, "inputs[0]"),
        ('{"inputs": [[NaN, 1, 1, 1, 1, 1, 1, 1]]}', "finite number"),
        ('{"inputs": [[Infinity, 1, 1, 1, 1, 1, 1, 1]]}', "finite number"),
        ('{"inputs": [[1e999, 1, 1, 1, 1, 1, 1, 1]]}', "finite number"),
        ({"inputs": [[1e39] + [1.0] * 7]}, "too large for float32"),
        ({"records": [{f"f{i}": 1.0 for i in range(8)} | {"zz": 1.0}]}, "unknown fields: zz"),
        ({"records": [{f"f{i}": 1.0 for i in range(7)}]}, "lacks 1 field(s): f7"),
    ],
)
async def test_bad_input_is_422_naming_the_problem(client, body, expected):
    assert expected in error_of(await post(client, body), 422)


@pytest.mark.anyio
async def test_oversized_body_is_413(client):
    big = json.dumps({"inputs": [[1.0] * 8] * 200})
    assert "4096 bytes" in error_of(await post(client, big), 413)


@pytest.mark.anyio
async def test_oversized_streamed_body_without_length_is_413(client):
    async def chunks():
        for _ in range(10):
            yield b" " * 1000

    response = await post(client, chunks())
    assert "content-length" not in response.request.headers
    error_of(response, 413)


@pytest.mark.anyio
async def test_unknown_route_is_json_404(client):
    response = await client.get("/v1/nothing", headers=AUTH)
    assert response.status_code == 404 and response.json()["error"] == "not_found"


@pytest.mark.anyio
async def test_audit_log_has_key_id_rows_status_and_no_payload(client, audit_file):
    await post(client, {"inputs": sample_rows(4).tolist()})
    await post(client, {"inputs": [[1.0] * 8]}, headers={"Authorization": "Bearer nope"})
    await post(client, {"inputs": []})
    lines = [json.loads(line) for line in audit_file.read_text().splitlines()]
    assert [(e["status"], e["rows"]) for e in lines] == [(200, 4), (401, 0), (422, 0)]
    assert lines[0]["key_id"] == key_id(KEY) and lines[1]["key_id"] == key_id("nope")
    assert all(e["path"] == "/v1/predict" and e["latency_ms"] >= 0 for e in lines)
    text = audit_file.read_text()
    assert KEY not in text and "inputs" not in text and "nope" not in text


def test_key_ring_refuses_to_be_empty_and_checks_digests():
    with pytest.raises(ValueError, match="open"):
        KeyRing([])
    ring = KeyRing([key_digest("a"), key_digest("b")])
    assert ring.accepts("b") and not ring.accepts("c")


@pytest.fixture()
def anyio_backend():
    return "asyncio"
