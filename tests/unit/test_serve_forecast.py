"""Serving a forecaster (``data.kind: series``): one history of steps in, the next ``horizon``
values of each target out, as the model predicts in process; every refusal is a 422 naming its
problem (400 for a body that is not JSON); the OpenAPI document states the history's shape and
the forecast's."""

from __future__ import annotations

import json

import httpx
import jsonschema
import numpy as np
import pytest

from serve_apps.guard import key_digest
from serve_apps.json_body import BodyError, InputError
from serve_apps.local_server import local_api
from serve_apps.model_bundle import ModelBundle
from serve_apps.requests.series import HistoryShape, parse_history
from serve_apps.settings import ServeSection
from tests.helpers import saved_forecaster
from trainers.data.series import SeriesInput
from trainers.models import load_model, predict
from trainers.tasks import input_schema

KEY = "forecast-test-key"
AUTH = {"Authorization": f"Bearer {KEY}", "content-type": "application/json"}
WINDOW, HORIZON, MAX_ROWS = 24, 12, 20


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    return saved_forecaster(tmp_path_factory.mktemp("co2"), seed=3)


@pytest.fixture(scope="module")
def model(saved):
    return load_model(saved[0])


@pytest.fixture(scope="module")
def shape(model):
    return HistoryShape(SeriesInput.of_model(model[1]), MAX_ROWS)


@pytest.fixture()
def client(saved):
    bundle = ModelBundle.from_directory(
        saved[0], uri="models:/co2/1", name="co2", version="1", run_id="c" * 32
    )
    api = local_api(bundle, ServeSection(max_rows=MAX_ROWS), [key_digest(KEY)], None)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=api), base_url="http://test")


def history_of(series, start: int, steps: int) -> list[list[float]]:
    return series[["co2"]].iloc[start : start + steps].to_numpy().tolist()


async def post(client, body) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body)
    return await client.post("/v1/predict", content=content, headers=AUTH)


def in_process(model, history) -> np.ndarray:
    """The forecast ``[horizon, targets]`` of the model called in process on one history."""
    net, spec = model
    windows = input_schema(spec).rows(history)
    values, _ = predict(net, spec, windows)
    return values[0]


@pytest.mark.anyio
async def test_a_history_is_answered_with_the_in_process_forecast(client, saved, model):
    history = history_of(saved[1], 100, WINDOW)
    response = await post(client, {"history": history})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["targets"] == ["co2"] and answer["horizon"] == HORIZON
    assert answer["model"] == {"name": "co2", "version": "1", "run_id": "c" * 32}
    assert np.asarray(answer["forecast"]).shape == (1, HORIZON)
    assert np.allclose(answer["forecast"], in_process(model, history).T, rtol=1e-6)


@pytest.mark.anyio
async def test_a_longer_history_is_read_by_its_last_window(client, saved, model):
    longer = history_of(saved[1], 90, WINDOW + 10)
    answer = (await post(client, {"history": longer})).json()
    last = (await post(client, {"history": longer[-WINDOW:]})).json()
    assert answer["forecast"] == last["forecast"]
    assert np.allclose(answer["forecast"], in_process(model, longer[-WINDOW:]).T, rtol=1e-6)


@pytest.mark.anyio
async def test_the_model_route_describes_the_forecaster(client):
    info = (await client.get("/v1/model", headers=AUTH)).json()
    assert info["task"] == "forecast" and info["num_features"] == 1
    assert info["feature_names"] == ["co2"] and info["max_rows"] == MAX_ROWS


def steps(count: int, value=1.0) -> list:
    return [[value] for _ in range(count)]


@pytest.mark.anyio
@pytest.mark.parametrize(
    "body, message",
    [
        ({"history": steps(5)}, "history has 5 steps; a forecast needs at least 24 (data.window)"),
        ({"history": steps(0)}, "history has 0 steps; a forecast needs at least 24"),
        ({"history": steps(WINDOW + MAX_ROWS + 1)}, "history has 45 steps, more than the limit"),
        ({"history": steps(WINDOW), "horizon": 3}, "unknown field(s) 'horizon'"),
        ({"inputs": [[1.0]]}, "one field, 'history': unknown field(s) 'inputs'"),
        ({}, "one field, 'history': no 'history'"),
        ([[1.0]], "a JSON object with one field, 'history'; got a list"),
        ({"history": "1,2,3"}, "history: a list of steps expected, got a string"),
        (
            {"history": [*steps(10), [1.0, 2.0], *steps(13)]},
            "history[10]: a step is a list of 1 numbers ['co2'], got 2 values",
        ),
        ({"history": [*steps(23), 5.0]}, "history[23]: a step is a list of 1 numbers ['co2']"),
        ({"history": [*steps(23), ["5"]]}, "history[23][0]: expected a number, got a string"),
        ({"history": [*steps(23), [True]]}, "history[23][0]: expected a number, got a boolean"),
        ({"history": [*steps(23), [None]]}, "history[23][0]: expected a number, got null"),
        ({"history": [*steps(23), [10**400]]}, "history[23][0]: expected a finite number within"),
    ],
    ids=[
        "too-short",
        "empty",
        "too-long",
        "extra-field",
        "other-field",
        "no-field",
        "not-an-object",
        "not-a-list",
        "wrong-width",
        "step-not-a-list",
        "string",
        "boolean",
        "null",
        "huge-integer",
    ],
)
async def test_a_history_the_model_cannot_take_is_a_422_naming_it(client, body, message):
    response = await post(client, body)
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "invalid_input"
    assert message in response.json()["message"]


@pytest.mark.anyio
@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e400"])
async def test_json_nan_and_infinity_are_refused(client, literal):
    history = ",".join(["[1.0]"] * 23 + [f"[{literal}]"])
    response = await post(client, f'{{"history": [{history}]}}'.encode())
    assert response.status_code == 422, response.text
    assert "history[23][0]: expected a finite number, got " in response.json()["message"]


def test_problems_are_listed_up_to_five(shape):
    body = {"history": [["x"], [True], [None], [1, 2], "a", ["y"], ["z"]]}
    with pytest.raises(InputError) as error:
        parse_history(json.dumps(body).encode(), shape)
    message = str(error.value)
    assert message.startswith("history has 7 steps; a forecast needs at least 24 (data.window); ")
    assert [f"history[{i}]" in message for i in range(5)] == [True] * 4 + [False]  # five in all
    assert message.endswith("history[3]: a step is a list of 1 numbers ['co2'], got 2 values")


def test_parsing_returns_the_masked_last_window(shape):
    history = [[float(i)] for i in range(30)]
    windows = parse_history(json.dumps({"history": history}).encode(), shape)
    assert windows.shape == (1, WINDOW, 2) and windows.dtype == np.float32
    assert windows[0, :, 0].tolist() == list(range(6, 30)) and (windows[0, :, 1] == 1).all()
    with pytest.raises(BodyError, match="the body is empty"):
        parse_history(b"  ", shape)


@pytest.mark.anyio
@pytest.mark.parametrize("body", [b'{"history": [[1.0]', b"", b"not json"])
async def test_a_body_that_is_not_json_is_a_400(client, body):
    response = await post(client, body)
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_json"


@pytest.mark.anyio
async def test_a_request_without_a_key_is_a_401(client, saved):
    body = json.dumps({"history": history_of(saved[1], 0, WINDOW)})
    response = await client.post("/v1/predict", content=body)
    assert response.status_code == 401
    assert set(response.json()) == {"error", "message"}


@pytest.mark.anyio
async def test_the_openapi_document_states_the_history_and_the_forecast(client, saved):
    document = (await client.get("/openapi.json", headers=AUTH)).json()
    operation = document["paths"]["/v1/predict"]["post"]
    request = operation["requestBody"]["content"]["application/json"]["schema"]
    history = request["properties"]["history"]
    assert request["required"] == ["history"] and request["additionalProperties"] is False
    assert history["minItems"] == WINDOW and history["maxItems"] == WINDOW + MAX_ROWS
    assert history["items"]["minItems"] == history["items"]["maxItems"] == 1
    assert "co2" in history["items"]["description"]
    response = operation["responses"]["200"]["content"]["application/json"]["schema"]
    forecast = response["properties"]["forecast"]
    assert forecast["minItems"] == forecast["maxItems"] == 1
    assert forecast["items"]["minItems"] == forecast["items"]["maxItems"] == HORIZON
    assert response["properties"]["targets"]["const"] == ["co2"]
    assert "history" in operation["responses"]["422"]["description"]
    jsonschema.validate(request["example"], request)
    example = await post(client, request["example"])
    assert example.status_code == 200, example.text
    answer = await post(client, {"history": history_of(saved[1], 0, WINDOW)})
    jsonschema.validate(answer.json(), response)


@pytest.mark.parametrize("kind", ["rnn", "gru"])
@pytest.mark.anyio
async def test_every_recurrent_kind_is_served_as_a_forecaster(tmp_path, kind):
    directory, series = saved_forecaster(tmp_path, kind=kind)
    bundle = ModelBundle.from_directory(
        directory, uri=f"models:/co2-{kind}/1", name=f"co2-{kind}", version="1", run_id="d" * 32
    )
    api = local_api(bundle, ServeSection(max_rows=MAX_ROWS), [key_digest(KEY)], None)
    transport = httpx.ASGITransport(app=api)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        history = history_of(series, 100, WINDOW)
        response = await post(client, {"history": history})
    assert response.status_code == 200, response.text
    model, spec = load_model(directory)
    expected, _ = predict(model, spec, input_schema(spec).rows(history))
    np.testing.assert_allclose(response.json()["forecast"], expected[0].T, rtol=1e-5)
