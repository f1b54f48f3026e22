"""The prediction API over HTTP (httpx against the ASGI app, no Ray): auth, limits, bad input."""

from __future__ import annotations

import contextlib
import json

import httpx
import numpy as np
import pytest
import torch

from serve_apps.guard import KeyRing, key_digest, key_id, route_path
from serve_apps.json_body import BodyError, InputError
from serve_apps.local_server import local_api
from serve_apps.model_bundle import ModelBundle
from serve_apps.requests.table_rows import InputShape, parse_rows
from serve_apps.settings import ServeSection
from tests.helpers import sample_rows, saved_model
from trainers.models import predict

KEY = "unit-test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
NEW_KEY = "rotated-unit-test-key"


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
    assert health.status_code == 200 and health.json() == {"status": "ok"}  # no model details
    wrong = await client.get("/healthz", headers={"Authorization": "Bearer not-the-key"})
    assert wrong.status_code == 200 and wrong.json() == {"status": "ok"}
    keyed = (await client.get("/healthz", headers=AUTH)).json()
    assert keyed["model"]["name"] == "unit" and keyed["model"]["version"] == "1"
    info = (await client.get("/v1/model", headers=AUTH)).json()
    assert info["num_features"] == 8 and info["classes"] == ["a", "b", "c"]
    assert info["feature_names"][:2] == ["f0", "f1"] and info["task"] == "classification"
    assert info["test_metrics"] == {"test_accuracy": 0.5}


@pytest.mark.anyio
@pytest.mark.parametrize(
    "body, expected",
    [
        ("[]", "must be a JSON object"),
        ("null", "must be a JSON object"),
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
        ({"inputs": [[1e39] + [1.0] * 7]}, "inputs[0][0]: 1e+39 is outside the model's input"),
        ({"inputs": [[10**400] + [1.0] * 7]}, "inputs[0][0]: a number is outside"),
        ({"inputs": [[3e38] * 8]}, "inputs[0][0]: 3e+38 is outside"),
        ({"inputs": [[True] * 8]}, "inputs[0][0]: expected a number, got a boolean"),
        ({"inputs": [[1.0] * 7 + ["1.5"]]}, "inputs[0][7]: expected a number, got a string"),
        ({"inputs": [[None] * 8]}, "inputs[0][0]: expected a number, got null"),
        ({"inputs": "1,2"}, "inputs: must be a list of rows, not a string"),
        (
            {"records": [{f"f{i}": 1.0 for i in range(7)} | {"f7": False}]},
            "records[0].f7: expected",
        ),
        ({"records": [[1.0] * 8]}, "records[0]: must be an object"),
        ({"records": [{f"f{i}": 1.0 for i in range(8)} | {"zz": 1.0}]}, "unknown fields: zz"),
        ({"records": [{f"f{i}": 1.0 for i in range(7)}]}, "lacks 1 field(s): f7"),
    ],
)
async def test_bad_input_is_422_naming_the_problem(client, body, expected):
    assert expected in error_of(await post(client, body), 422)


@pytest.mark.anyio
@pytest.mark.parametrize(
    "body, expected",
    [
        ('{"inputs": [[1, 2', "malformed JSON"),
        ("", "the body is empty"),
        ("  ", "the body is empty"),
        (b"\xff\xfe{", "malformed JSON"),
        ("[" * 3000, "more arrays, objects or values"),
    ],
)
async def test_a_body_that_is_not_json_is_400(client, body, expected):
    message = error_of(await post(client, body), 422 if "more arrays" in expected else 400)
    assert expected in message


@pytest.mark.anyio
async def test_validation_stops_after_a_few_problems(client):
    message = error_of(await post(client, {"inputs": [["x"] * 8] * 10}), 422)
    assert message.count("expected a number") == 5
    assert message.endswith("(validation stopped after 5 problems)")


@pytest.mark.anyio
async def test_values_within_the_published_bound_give_finite_predictions(client):
    info = (await client.get("/v1/model", headers=AUTH)).json()
    bound = info["input_bound"]
    signs = np.random.default_rng(0).choice([-1.0, 1.0], size=(10, 8))
    response = await post(client, {"inputs": (signs * bound).tolist()})
    assert response.status_code == 200, response.text
    assert np.isfinite(response.json()["probabilities"]).all()
    beyond = await post(client, {"inputs": [[bound * 1.5] + [0.0] * 7]})
    assert "outside the model's input range" in error_of(beyond, 422)


@pytest.mark.anyio
async def test_a_row_whose_prediction_is_not_finite_is_422_naming_it(tmp_path):
    """Weights that overflow (so no bound can be given): the row is refused, never a 500."""
    from trainers.models import load_model, save_model

    model, spec = load_model(saved_model(tmp_path / "base", seed=3))
    with torch.no_grad():
        model.net[-1].bias[0] = 3e38  # class a's logit is near the float32 maximum: no bound
        model.net[-1].weight[0] = 1e30  # and large features push it over
    bundle = ModelBundle.from_directory(
        save_model(tmp_path / "broken", model, spec), uri="u", name="b", version="1", run_id=None
    )
    api = local_api(bundle, ServeSection(max_rows=10), [key_digest(KEY)])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=api), base_url="http://t") as c:
        assert (await c.get("/v1/model", headers=AUTH)).json()["input_bound"] > 3e38
        rows = [[0.0] * 8, [1e9] * 8, [0.0] * 8, [-1e9] * 8]
        message = error_of(await post(c, {"inputs": rows}), 422)
        assert "row(s) 1, 3" in message and "not finite" in message
        assert (await post(c, {"inputs": rows[:1]})).status_code == 200


@pytest.mark.anyio
async def test_body_limit_follows_from_rows_and_width(bundle):
    """The limit is what max_rows rows of records need, with room for pretty-printed numbers:
    the largest valid request fits, a flood of junk does not."""
    api = local_api(bundle, ServeSection(max_rows=100), [key_digest(KEY)])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=api), base_url="http://t") as c:
        limit = (await c.get("/v1/model", headers=AUTH)).json()["max_body_bytes"]
        assert limit < 100 * 8 * 80
        value = -1.2345678901234567e-300
        records = [{f"f{i}": value for i in range(8)} for _ in range(100)]
        largest = json.dumps({"records": records}, indent=4)
        assert len(largest) < limit
        assert (await post(c, largest)).status_code == 200
        junk = '{"inputs": [[' + "{}, " * (limit // 4) + "{}]]}"
        assert "exceeds the limit" in error_of(await post(c, junk), 413)
        junk = junk[: limit - 10] + "{}]]}"
        assert "more arrays, objects or values" in error_of(await post(c, junk), 422)


def json_values(document) -> int:
    """How many JSON values ``document`` holds, itself and every container included."""
    count, pending = 0, [document]
    while pending:
        value = pending.pop()
        count += 1
        if isinstance(value, list):
            pending.extend(value)
        elif isinstance(value, dict):
            pending.extend(value.values())
    return count


def test_junk_at_the_body_limit_is_refused_with_bounded_work(monkeypatch):
    """Bounded work: the worst bodies that get past the size limit, for a 64-feature model
    taking 1024 rows, are refused (or parsed) having decoded at most twice the JSON values of
    the largest valid request; bodies of brackets, objects or commas are refused by their byte
    counts before the JSON decoder makes any Python object."""
    from serve_apps.requests import table_rows

    shape = InputShape(tuple(f"pixel_{i}" for i in range(64)), 1024, 1e30)
    limit = shape.body_bytes
    valid_values = 2 + shape.max_rows * (1 + shape.width)  # {"inputs": [rows of numbers]}
    decoded: list[int] = []  # the JSON values of each document decoded
    real_decode = table_rows.decode_json

    def decode_json(body: bytes):
        document = real_decode(body)
        decoded.append(json_values(document))
        return document

    monkeypatch.setattr(table_rows, "decode_json", decode_json)

    def filled(head: str, unit: str, tail: str) -> bytes:
        return (head + unit * ((limit - len(head) - len(tail)) // len(unit)) + tail).encode()

    rows = np.random.default_rng(0).normal(size=(1024, 64)).tolist()
    records = [dict(zip(shape.feature_names, r, strict=True)) for r in rows]
    bodies = [  # (body, whether it reaches the JSON decoder)
        (filled('{"inputs": [[', "{}, ", "{}]]}"), False),
        (filled('{"inputs": [', "[], ", "[]]}"), False),
        (filled('{"inputs": [[', "true,", "true]]}"), False),
        (filled('{"inputs": [["', "a", '"]]}'), True),
        (filled("", "[", ""), False),
        (json.dumps({"inputs": [[True] * 64] * 1024}).encode(), True),
        (json.dumps({"records": records}).encode(), True),
    ]
    for body, decodes in bodies:
        assert len(body) <= limit, body[:40]
        decoded.clear()
        with contextlib.suppress(InputError, BodyError):
            parse_rows(body, shape)
        assert len(decoded) == int(decodes), body[:40]
        assert all(values <= 2 * valid_values for values in decoded), (body[:40], decoded)


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


@pytest.fixture()
def prefixed(bundle, audit_file):
    """The API as Ray Serve runs it under route prefix /digits: ASGI root_path set, and the
    path still holding it. Two keys are active (a rotation in progress)."""
    settings = ServeSection(max_rows=10, max_body_bytes=4096)
    api = local_api(bundle, settings, [key_digest(KEY), key_digest(NEW_KEY)], audit_file)
    transport = httpx.ASGITransport(app=api, root_path="/digits")
    return httpx.AsyncClient(transport=transport, base_url="http://test")


GUARDED_ROUTES = [
    ("POST", "/v1/predict"),
    ("GET", "/v1/model"),
    ("GET", "/openapi.json"),
    ("GET", "/docs"),
    ("GET", "/redoc"),
    ("GET", "/docs/oauth2-redirect"),
    ("GET", "/v1/nothing"),
    ("GET", "/healthz/"),
    ("GET", "/"),
]


@pytest.mark.anyio
@pytest.mark.parametrize(
    "prefix, method, path",
    [(prefix, *route) for prefix in ("", "/digits") for route in GUARDED_ROUTES]
    + [("/digits", "GET", "")],  # the prefix without its slash (at /, no request has no path)
)
async def test_every_route_but_healthz_needs_the_key(client, prefixed, prefix, method, path):
    """Deny by default, decided on the routed path: at / and under a route prefix, the API, the
    OpenAPI document, the docs and unknown paths are 401 without a key (404s are not revealed)."""
    http = prefixed if prefix else client
    body = {"inputs": sample_rows(1).tolist()} if method == "POST" else None
    refused = await http.request(method, prefix + path, json=body)
    assert refused.status_code == 401, refused.text
    assert refused.headers["www-authenticate"] == "Bearer"
    wrong = await http.request(
        method, prefix + path, json=body, headers={"Authorization": "Bearer x"}
    )
    assert wrong.status_code == 401
    allowed = await http.request(method, prefix + path, json=body, headers=AUTH)
    assert allowed.status_code != 401


@pytest.mark.anyio
async def test_under_a_route_prefix_the_api_answers_with_either_key(prefixed, audit_file):
    rows = sample_rows(2).tolist()
    for key in (KEY, NEW_KEY):
        answer = await prefixed.post(
            "/digits/v1/predict", json={"inputs": rows}, headers={"Authorization": f"Bearer {key}"}
        )
        assert answer.status_code == 200, answer.text
    health = await prefixed.get("/digits/healthz")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    spec = await prefixed.get("/digits/openapi.json", headers=AUTH)
    assert spec.status_code == 200 and "/v1/predict" in spec.json()["paths"]
    lines = [json.loads(line) for line in audit_file.read_text().splitlines()]
    assert [(e["path"], e["key_id"], e["status"]) for e in lines[:3]] == [
        ("/digits/v1/predict", key_id(KEY), 200),
        ("/digits/v1/predict", key_id(NEW_KEY), 200),
        ("/digits/healthz", "-", 200),
    ]


@pytest.mark.parametrize(
    "path, root_path",
    [
        ("/v1/predict", ""),
        ("/digits/v1/predict", "/digits"),
        ("/digits/healthz", "/digits"),
        ("/digits", "/digits"),
        ("/digitsx/healthz", "/digits"),
        ("/healthz", "/digits"),
        ("/a/b/healthz", "/a/b"),
        ("/a/healthz", "/a/b"),
    ],
)
def test_route_path_is_the_path_starlette_routes_on(path, root_path):
    from starlette._utils import get_route_path

    scope = {"type": "http", "path": path, "root_path": root_path}
    assert route_path(scope) == get_route_path(scope)


def test_key_ring_refuses_to_be_empty_and_checks_digests():
    with pytest.raises(ValueError, match="open"):
        KeyRing([])
    ring = KeyRing([key_digest("a"), key_digest("b")])
    assert ring.accepts("b") and not ring.accepts("c")


@pytest.fixture()
def anyio_backend():
    return "asyncio"


def test_a_model_config_of_huge_widths_is_refused_before_anything_is_allocated(bundle):
    """A registered model_config.json that describes 10^12 parameters: counted on the meta
    device and refused, where building it would exhaust memory."""
    import dataclasses
    import resource

    from serve_apps.model_bundle import ModelTooLarge

    assert bundle.bounded(ServeSection().max_parameters) is bundle
    huge = {**bundle.model_config, "options": {"kind": "mlp", "hidden": [1_000_000, 1_000_000]}}
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(ModelTooLarge, match=r"1,000,\d{3},\d{3},\d{3} parameters, over serve"):
        dataclasses.replace(bundle, model_config=huge).bounded(ServeSection().max_parameters)
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kib < 200_000  # 4 TB if allocated
