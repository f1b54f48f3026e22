"""The OpenAPI document against the server: schemathesis generates requests from `/openapi.json`
(valid ones, and ones that break the schema) and checks every answer against the document: no
5xx, every valid request answered 200, every status and body as documented."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import schemathesis
import torch
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import negative_data_rejection

from serve_apps.guard import key_digest
from serve_apps.local_server import local_api
from serve_apps.model_bundle import ModelBundle
from serve_apps.settings import ServeSection
from tests.helpers import saved_model
from trainers.families import family_of
from trainers.models import build_model, save_model
from trainers.spec import ModelSpec

KEY = "openapi-test-key-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {KEY}"}
EXAMPLES = {"/v1/predict": 100, "/v1/model": 10, "/v1/monitor": 10, "/healthz": 10}
WITH_INPUT = {"/v1/predict"}  # the operations that take input, so can be sent invalid input


def regression_model(directory: Path) -> Path:
    """A regression MLP with random weights and fitted input and target scaling."""
    torch.manual_seed(2)
    names = ["age", "weight[kg]", "height, cm", "score"]
    options = {"hidden": [8], "activation": "tanh"}
    spec = ModelSpec("mlp", "regression", 4, 1, options, feature_names=names)
    model = build_model(spec)
    data = np.random.default_rng(2).normal(50.0, 20.0, size=(64, 4)).astype(np.float32)
    family_of("mlp").fit(model, data, data.sum(axis=1) * 1000)
    return save_model(directory, model, spec)


@pytest.fixture(scope="module", params=["classification", "regression"])
def api_schema(request, tmp_path_factory):
    directory = tmp_path_factory.mktemp("model")
    if request.param == "classification":
        saved_model(directory, seed=5)
    else:
        regression_model(directory)
    bundle = ModelBundle.from_directory(
        directory, uri="models:/fuzz/1", name="fuzz", version="1", run_id="f" * 32
    )
    api = local_api(bundle, ServeSection(max_rows=20), [key_digest(KEY)])
    return schemathesis.openapi.from_asgi("/openapi.json", api, headers=AUTH)


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_every_answer_is_as_documented(api_schema, mode):
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert {op.path for op in operations} == set(EXAMPLES)
    statuses: dict[str, list[int]] = {}
    for operation in operations:
        if mode == GenerationMode.NEGATIVE and operation.path not in WITH_INPUT:
            continue

        @given(case=operation.as_strategy(generation_mode=mode, headers=AUTH))
        @settings(
            max_examples=EXAMPLES[operation.path],
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        def check(case) -> None:
            # Refusals are checked below, 413 (a body over the limit) included.
            response = case.call_and_validate(excluded_checks=[negative_data_rejection])
            statuses.setdefault(case.operation.path, []).append(response.status_code)

        check()
    print({path: Counter(codes) for path, codes in statuses.items()})
    if mode == GenerationMode.POSITIVE:  # every valid request answered
        assert all(set(codes) == {200} for codes in statuses.values()), statuses
        assert len(statuses["/v1/predict"]) >= 100
    else:  # every invalid one refused, with a documented 4xx
        assert set(statuses["/v1/predict"]) <= {400, 413, 422}, statuses
