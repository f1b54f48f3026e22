"""``POST /v1/generate`` of a GAN over HTTP (httpx against the ASGI app, no Ray): rows of the
source's columns, the same rows for the same request, the key, the row limit, and a clear 4xx
for every malformed request; the OpenAPI document states the request."""

from __future__ import annotations

import json

import httpx
import pytest

from serve_apps.guard import key_digest
from serve_apps.local_server import local_api
from serve_apps.model_bundle import ModelBundle
from serve_apps.settings import ServeSection
from tests.helpers import saved_gan

KEY = "unit-test-key"
AUTH = {"Authorization": f"Bearer {KEY}", "content-type": "application/json"}


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    directory = saved_gan(tmp_path_factory.mktemp("gan"))
    bundle = ModelBundle.from_directory(
        directory, uri="models:/pen/1", name="pen", version="1", run_id="r" * 32
    )
    settings = ServeSection(max_rows=10, max_body_bytes=4096)
    api = local_api(bundle, settings, [key_digest(KEY)], tmp_path_factory.mktemp("a") / "a.jsonl")
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=api), base_url="http://test")


async def generate(client, body, headers=AUTH):
    content = body if isinstance(body, (str, bytes)) else json.dumps(body)
    return await client.post("/v1/generate", content=content, headers=headers)


@pytest.mark.anyio
async def test_rows_of_the_asked_classes_and_the_same_rows_for_the_same_request(client):
    response = await generate(client, {"n": 3, "labels": ["Gentoo", "Adelie", "Gentoo"], "seed": 5})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["columns"][-1] == "species" and "island" in body["columns"]
    assert [row[-1] for row in body["rows"]] == ["Gentoo", "Adelie", "Gentoo"]
    assert body["model"] == {"name": "pen", "version": "1", "run_id": "r" * 32}
    again = await generate(client, {"n": 3, "labels": ["Gentoo", "Adelie", "Gentoo"], "seed": 5})
    assert again.json()["rows"] == body["rows"]
    other = await generate(client, {"n": 3, "labels": ["Gentoo", "Adelie", "Gentoo"], "seed": 6})
    assert other.json()["rows"] != body["rows"]
    drawn = (await generate(client, {"n": 4})).json()["rows"]
    assert len(drawn) == 4 and {row[-1] for row in drawn} <= {"Adelie", "Chinstrap", "Gentoo"}


@pytest.mark.anyio
@pytest.mark.parametrize(
    "body, status, message",
    [
        ("{not json", 400, "malformed JSON"),
        ([1, 2], 422, "must be an object"),
        ({"labels": ["Adelie"]}, 422, "n (how many rows to generate) is required"),
        ({"n": 11}, 422, "n must be an integer from 1 to 10"),
        ({"n": 2, "labels": ["Emperor"]}, 422, "unknown label 'Emperor'"),
        ({"n": 3, "labels": ["Adelie", "Gentoo"]}, 422, "give 1, or n"),
        ({"n": 1, "labels": "Adelie"}, 422, "labels must be a list"),
        ({"n": 1, "seed": -1}, 422, "seed must be an integer from 0"),
        ({"n": True}, 422, "n must be an integer"),
        ({"n": 1, "temperature": 2}, 422, "unknown field(s) ['temperature']"),
    ],
)
async def test_a_malformed_request_gets_a_4xx_naming_it(client, body, status, message):
    response = await generate(client, body)
    assert response.status_code == status, response.text
    assert message in response.json()["message"]


@pytest.mark.anyio
async def test_the_key_is_required_and_the_openapi_document_states_the_request(client):
    assert (await generate(client, {"n": 1}, headers={})).status_code == 401
    document = (await client.get("/openapi.json", headers=AUTH)).json()
    operation = document["paths"]["/v1/generate"]["post"]
    schema = operation["requestBody"]["content"]["application/json"]["schema"]
    assert schema["properties"]["n"]["maximum"] == 10
    assert schema["properties"]["labels"]["items"]["enum"] == ["Adelie", "Chinstrap", "Gentoo"]
    assert "/v1/predict" not in document["paths"]
