"""Sequence data and the recurrent families: long-format validation (exit-2 errors), padding
with a mask channel, the input schema, packing that ignores padding, and the HTTP request."""

from __future__ import annotations

import anyio
import numpy as np
import pandas as pd
import pytest
import torch

from serve_apps.json_body import InputError as RequestError
from serve_apps.requests.sequence import SequenceShape, parse_sequences
from trainers.config import DataConfig
from trainers.data.bundled import digits_rows
from trainers.data.sequences import SequenceInput, lengths, prepare_sequences
from trainers.errors import DataError, InputError
from trainers.families import family_of
from trainers.families.recurrent_net import Recurrent
from trainers.tasks import input_schema, task_for


def long_frame() -> pd.DataFrame:
    """Three sequences of 3, 1 and 2 steps, rows shuffled; label constant per sequence."""
    return pd.DataFrame(
        {
            "id": ["b", "a", "a", "c", "a", "c"],
            "t": [0, 2, 0, 1, 1, 0],
            "x": [10.0, 3.0, 1.0, 6.0, 2.0, 5.0],
            "y": ["no", "yes", "yes", "no", "yes", "no"],
        }
    )


CFG = {"kind": "sequence", "source": "s.csv", "id": "id", "time": "t", "label": "y"}


def test_sequences_are_ordered_padded_and_masked():
    dataset = prepare_sequences(long_frame(), DataConfig(**CFG))
    assert dataset.features.shape == (3, 3, 2)
    assert dataset.features[0, :, 0].tolist() == [1.0, 2.0, 3.0]  # a, by time
    assert lengths(dataset.features).tolist() == [3, 1, 2]
    assert dataset.features[1, :, 1].tolist() == [1.0, 0.0, 0.0]  # the mask channel
    assert dataset.classes == ["no", "yes"] and dataset.labels.tolist() == [1, 0, 0]
    assert dataset.ids is not None and dataset.ids.tolist() == ["a", "b", "c"]
    assert len(dataset.raw_rows(np.array([0, 2]))) == 5  # the long rows of a and c


@pytest.mark.parametrize(
    "change, settings, message",
    [
        (lambda f: f.assign(y=["no", "yes", "no", "no", "yes", "no"]), {}, "changes within 1"),
        (lambda f: f.assign(t=[0, 2, 0, 1, 0, 0]), {}, "1 duplicate"),
        (lambda f: f, {"max_length": 2}, "1 sequence.*longer than data.max_length"),
        (lambda f: f.drop(columns="t"), {}, r"column\(s\) \['t'\] not found"),
        (lambda f: f.assign(x=["a"] * 6), {}, "not numeric: x"),
        (lambda f: f.assign(x=[np.nan] * 6), {}, "NaN or infinite"),
    ],
    ids=["label-changes", "duplicate-steps", "too-long", "missing-column", "text", "nan"],
)
def test_bad_sequence_data_is_one_data_error(change, settings, message):
    with pytest.raises(DataError, match=message):
        prepare_sequences(change(long_frame()), DataConfig(**CFG, **settings))


@pytest.mark.parametrize("truncate, kept", [("head", [1.0, 2.0]), ("tail", [2.0, 3.0])])
def test_long_sequences_are_cut_when_asked(truncate, kept):
    settings = DataConfig(**CFG, max_length=2, truncate=truncate)
    dataset = prepare_sequences(long_frame(), settings)
    assert dataset.features.shape == (3, 2, 2) and dataset.features[0, :, 0].tolist() == kept


def test_the_bundled_digit_rows_have_lengths_from_3_to_8():
    frame = digits_rows()
    dataset = prepare_sequences(frame, DataConfig(kind="sequence", source="digits_rows"))
    counts = np.bincount(lengths(dataset.features))
    assert len(dataset.labels) == 1797 and counts[3] > 0 and counts[8] > counts[7] > 0


def test_the_input_schema_takes_long_frames_and_lists_and_names_problems():
    schema = SequenceInput(("x",), "id", "t", 3)
    from_frame = schema.rows(long_frame())
    from_lists = schema.rows([[[1.0], [2.0], [3.0]], [[10.0]], [[5.0], [6.0]]])
    assert np.array_equal(from_frame, from_lists)
    with pytest.raises(InputError, match="4 steps; the model takes at most 3"):
        schema.rows([[[1.0]] * 4])
    with pytest.raises(InputError, match="steps of 1 features"):
        schema.rows([[[1.0, 2.0]]])
    with pytest.raises(InputError, match="is empty"):
        schema.rows([[]])
    with pytest.raises(InputError, match=r"missing column\(s\) \['t'\]"):
        schema.rows(long_frame().drop(columns="t"))


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_padding_never_reaches_the_recurrence(kind, bidirectional):
    torch.manual_seed(0)
    model = Recurrent(kind, 2, 3, hidden=5, layers=2, bidirectional=bidirectional).eval()
    steps = np.random.default_rng(0).normal(size=(4, 2))
    short = torch.as_tensor(SequenceInput(("a", "b"), "i", "t", 4).rows([steps]))
    longer = torch.as_tensor(SequenceInput(("a", "b"), "i", "t", 9).rows([steps]))
    with torch.no_grad():
        assert torch.allclose(model(short), model(longer), atol=1e-6)


def test_a_recurrent_family_needs_sequence_data():
    assert family_of("gru").data_kinds == ("sequence", "series")
    assert family_of("mlp").data_kinds == ("table",)


def test_a_sequence_request_is_checked_value_by_value():
    shape = SequenceShape(SequenceInput(("a", "b"), "i", "t", 3), max_rows=4)
    good = b'{"sequences": [[[1, 2], [3, 4]], [[5, 6]]]}'
    padded = parse_sequences(good, shape)
    assert padded.shape == (2, 3, 3) and padded[1, :, 2].tolist() == [1.0, 0.0, 0.0]
    cases = {
        b'{"sequences": [[[1, 2, 3]]]}': "sequences[0][0]: a step is a list of 2 numbers",
        b'{"sequences": [[[1, "x"]]]}': "sequences[0][0][1]: expected a number, got a string",
        b'{"sequences": [[]]}': "sequences[0]: empty",
        b'{"sequences": [[[1, 2], [1, 2], [1, 2], [1, 2]]]}': "4 steps; the model takes at most 3",
        b'{"sequences": [[[NaN, 2]]]}': "expected a finite number",
        b'{"sequences": [[[1' + b"0" * 400 + b", 2]]]}": "expected a finite number",
        b'{"inputs": [[1, 2]]}': "one field, 'sequences'",
    }
    for body, message in cases.items():
        with pytest.raises(RequestError, match=message.replace("[", r"\[").replace("]", r"\]")):
            parse_sequences(body, shape)


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_each_recurrent_family_takes_its_example_and_is_served_as_it_predicts(tmp_path, kind):
    from dataclasses import asdict

    from trainers.models import build_model, load_model, save_model
    from trainers.spec import ModelSpec

    schema = SequenceInput(("a", "b"), "id", "t", 5)
    spec = ModelSpec(
        kind, "classification", 2, 3, {"kind": kind, "hidden": 4}, ["a", "b"], ["x", "y", "z"]
    )
    spec.preprocessing = {"sequence": asdict(schema)}
    model = build_model(spec)
    family = family_of(kind)
    family.fit(model, schema.rows([[[1.0, 2.0], [3.0, 5.0]], [[0.0, 1.0]]]), None)
    model, spec = load_model(save_model(tmp_path, model, spec))  # weights + config only
    rows = input_schema(spec).rows(task_for(spec).example_input(spec, 3))
    assert rows.shape == (3, 5, 3)
    labels, probabilities = family.predict(model, spec, rows)
    assert len(labels) == 3 and probabilities is not None
    # served over HTTP (the API in process), it answers as it predicts in process
    from serve_apps.guard import key_digest
    from serve_apps.local_server import local_api
    from serve_apps.model_bundle import ModelBundle
    from serve_apps.settings import ServeSection

    bundle = ModelBundle.from_directory(
        tmp_path, uri=f"models:/{kind}/1", name=kind, version="1", run_id="s" * 32
    )
    api = local_api(bundle, ServeSection(max_rows=4), [key_digest("k" * 20)], None)
    sequences = [[[1.0, 2.0], [3.0, 5.0]], [[0.0, 1.0]]]
    response = anyio.run(_post, api, {"sequences": sequences})
    expected, _ = family.predict(model, spec, input_schema(spec).rows(sequences))
    assert response.status_code == 200, response.text
    assert response.json()["predictions"] == expected.tolist()


async def _post(api, body: dict):
    import httpx

    transport = httpx.ASGITransport(app=api)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        headers = {"Authorization": f"Bearer {'k' * 20}"}
        return await client.post("/v1/predict", json=body, headers=headers)


SEQUENCE_RUN = {
    "data": {"kind": "sequence", "source": "digits_rows", "train_fraction": 0.4},
    "model": {"kind": "gru", "hidden": 32},
    "optim": {"epochs": 10, "lr": 0.01},
    "checkpoint": {"every_rounds": 2},
}


def test_a_recurrent_model_trains_red_blue_and_resumes_exactly(tmp_path):
    from tests.helpers import Recorder, plain_trainer, without_timing

    expected = plain_trainer(Recorder(tmp_path / "full"), **SEQUENCE_RUN).run().metrics
    assert expected["test_accuracy"] >= 0.5  # ten classes: chance is 0.1
    first = Recorder(tmp_path / "first")
    plain_trainer(first, **SEQUENCE_RUN).run()
    resumed = plain_trainer(Recorder(tmp_path / "resumed"), **SEQUENCE_RUN)
    torch.manual_seed(12345)
    resumed.restore(first.checkpoints[0])
    assert without_timing(resumed.run().metrics) == without_timing(expected)


def test_a_recurrent_model_regresses_a_value_per_sequence(tmp_path):
    """The head regresses one value per sequence (the digit read as a number), in its units."""
    from tests.helpers import Recorder, plain_trainer

    run = {**SEQUENCE_RUN, "data": {**SEQUENCE_RUN["data"], "task": "regression"}}
    metrics = plain_trainer(Recorder(tmp_path), **run).run().metrics
    assert {"test_mse", "test_mae", "test_r2"} <= set(metrics)
    assert metrics["test_r2"] > 0.3, metrics  # far better than the mean digit


def test_a_split_column_names_each_sequence_whole():
    """data.split_column on sequences: one role a sequence, read from its rows; a sequence whose
    rows disagree is refused."""
    frame = long_frame()
    frame["fold"] = frame["id"].map({"a": "train", "b": "test", "c": "val"})
    dataset = prepare_sequences(frame, DataConfig(**CFG, split_column="fold"))
    assert list(dataset.ids) == ["a", "b", "c"]
    assert list(dataset.split_roles) == ["train", "test", "val"]
    assert "fold" not in dataset.feature_names
    frame.loc[frame.index[frame["id"] == "a"][0], "fold"] = "test"
    with pytest.raises(DataError, match="changes within 1 sequence"):
        prepare_sequences(frame, DataConfig(**CFG, split_column="fold"))
