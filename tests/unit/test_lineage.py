"""The data a run read, as MLflow's dataset lineage: where it came from and a digest that moves
with what was read."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
from mlflow.data.code_dataset_source import CodeDatasetSource

from orchestrator.lineage import dataset_source, digest


def plan_of(features: np.ndarray, labels: np.ndarray, stream=None):
    return SimpleNamespace(stream=stream, dataset=SimpleNamespace(features=features, labels=labels))


def test_the_digest_moves_with_the_data_and_only_with_it():
    rng = np.random.default_rng(0)
    features, labels = rng.random((300_000, 4), dtype=np.float32), rng.integers(0, 3, 300_000)
    same = digest(plan_of(features.copy(), labels.copy()))
    assert same == digest(plan_of(features, labels)) and len(same) == 16
    changed = features.copy()
    changed[3] += 1  # a row the hash samples (every third of 300,000)
    assert digest(plan_of(changed, labels)) != same
    assert digest(plan_of(features[:-3], labels[:-3])) != same  # fewer rows
    streamed = SimpleNamespace(fingerprint="0123456789abcdef0123")
    assert digest(plan_of(features, labels, streamed)) == "0123456789abcdef"


def test_the_source_is_the_bundled_set_or_the_files_uri(tmp_path):
    bundled = dataset_source("digits")
    assert isinstance(bundled, CodeDatasetSource) and bundled.to_dict()["tags"] == {
        "redblue.bundled": "digits"
    }
    local = dataset_source(str(tmp_path / "table.csv"))
    assert local.to_dict()["uri"] == (tmp_path / "table.csv").as_uri()
    assert dataset_source("s3://bucket/tables/").to_dict()["uri"] == "s3://bucket/tables/"
