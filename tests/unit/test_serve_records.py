"""Serving a model of a real table: records of raw values (strings for categories, null for
missing), answered like the pyfunc model; wrong types and refused gaps are 422s naming the
field; the OpenAPI document states each field's type and categories."""

from __future__ import annotations

import json

import httpx
import numpy as np
import pytest

from serve_apps.guard import key_digest
from serve_apps.local_server import local_api
from serve_apps.model_bundle import ModelBundle
from serve_apps.settings import ServeSection
from tests.helpers import saved_table_model
from trainers.models import load_model, predict
from trainers.tasks import input_schema

KEY = "records-test-key"
AUTH = {"Authorization": f"Bearer {KEY}", "content-type": "application/json"}


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    return saved_table_model(tmp_path_factory.mktemp("penguins"), seed=1)


@pytest.fixture()
def client(saved):
    directory, _ = saved
    bundle = ModelBundle.from_directory(
        directory, uri="models:/penguins/1", name="penguins", version="1", run_id="r" * 32
    )
    api = local_api(bundle, ServeSection(max_rows=20), [key_digest(KEY)], None)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=api), base_url="http://test")


def records_of(raw, rows) -> list[dict]:
    part = raw.iloc[rows]
    return part.astype(object).where(part.notna(), None).to_dict("records")


async def post(client, body):
    return await client.post("/v1/predict", content=json.dumps(body), headers=AUTH)


@pytest.mark.anyio
async def test_records_with_strings_and_nulls_are_answered_like_the_pyfunc_model(client, saved):
    directory, raw = saved
    rows = [0, 3, 8, 271, 339]  # row 3 has every measurement missing, 8 and 339 lack sex
    records = records_of(raw, rows)
    assert any(value is None for record in records for value in record.values())
    response = await post(client, {"records": records})
    assert response.status_code == 200, response.text
    model, spec = load_model(directory)
    features = input_schema(spec).rows(raw.iloc[rows])
    expected, probabilities = predict(model, spec, features)
    assert response.json()["predictions"] == expected.tolist()
    assert np.allclose(response.json()["probabilities"], probabilities, atol=1e-6)


@pytest.mark.anyio
async def test_an_unseen_category_is_answered(client, saved):
    record = records_of(saved[1], [0])[0] | {"island": "Atlantis", "sex": None}
    response = await post(client, {"records": [record]})
    assert response.status_code == 200, response.text


@pytest.mark.anyio
@pytest.mark.parametrize(
    "change, message",
    [
        ({"bill_length_mm": "long"}, "records[0].bill_length_mm: expected a number, got a string"),
        ({"year": None}, "records[0].year: null is not allowed"),
        ({"bill_depth_mm": 1e38}, "records[0].bill_depth_mm: 1e+38 is outside"),
        ({"island": {"name": "Dream"}}, "records[0].island: expected a category"),
    ],
    ids=["text-in-number", "null-without-gaps", "out-of-range", "object-as-category"],
)
async def test_a_wrong_value_is_a_422_naming_the_field(client, saved, change, message):
    record = records_of(saved[1], [0])[0] | change
    response = await post(client, {"records": [record]})
    assert response.status_code == 422, response.text
    assert message in response.json()["message"]


@pytest.mark.anyio
async def test_rows_of_numbers_are_refused_for_a_model_with_categories(client):
    response = await post(client, {"inputs": [[1.0] * 7]})
    assert response.status_code == 422
    assert "send 'records'" in response.json()["message"]


@pytest.mark.anyio
async def test_the_openapi_document_states_types_and_categories(client):
    document = (await client.get("/openapi.json", headers=AUTH)).json()
    body = document["paths"]["/v1/predict"]["post"]["requestBody"]["content"]["application/json"]
    record = body["schema"]["properties"]["records"]["items"]
    fields = record["properties"]
    assert fields["island"]["x-categories"] == ["Biscoe", "Dream", "Torgersen"]
    assert "null" in fields["island"]["type"]
    assert fields["bill_length_mm"]["type"] == ["number", "null"]  # gaps in training: filled
    assert fields["year"]["type"] == "number"  # no gaps in training: null refused
    assert record["required"] == list(fields)
    example = body["schema"]["example"]
    response = await post(client, example)
    assert response.status_code == 200, response.text
