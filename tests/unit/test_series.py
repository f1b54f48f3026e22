"""Time series (``data.kind: series``): contiguous time blocks and windows that never cross
them, standardization fitted on the training blocks, forecasting metrics and baselines, the
forecaster's input schema and outputs, exact resume on plain engines."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from orchestrator.config import ConfigError, validate
from tests.helpers import (
    Recorder,
    forecaster_config,
    forecaster_plan,
    plain_trainer,
    without_timing,
)
from trainers.config import DataConfig
from trainers.data.forecast_scores import (
    baseline_forecasts,
    baselines,
    errors_by_step,
    forecast_metrics,
)
from trainers.data.series import (
    naive_scale,
    prepare_series,
    time_blocks,
    uneven_spacing,
    window_split,
)
from trainers.errors import DataError, InputError
from trainers.families import family_of
from trainers.loop.plan import plan_run
from trainers.models import build_model, load_model, save_model
from trainers.tasks import as_output, input_schema


def test_blocks_are_contiguous_in_time_order_with_test_last_and_validation_before_it():
    steps, test_fraction, val_fraction = 500, 0.2, 0.1
    blocks = time_blocks(steps, test_fraction, val_fraction, red_ratio=0.3, pairs=3)
    assert [b.part for b in blocks] == ["red", "blue"] * 3 + ["val", "test"]
    assert blocks[0].start == 0 and blocks[-1].stop == steps
    assert all(a.stop == b.start for a, b in zip(blocks, blocks[1:], strict=False))
    test = round(steps * test_fraction)  # then V: val_fraction of the steps before T
    assert blocks[-1].stop - blocks[-1].start == test
    assert blocks[-2].stop - blocks[-2].start == round((steps - test) * val_fraction)
    for red, blue in zip(blocks[0:6:2], blocks[1:6:2], strict=True):
        assert red.stop - red.start == round(0.3 * (blue.stop - red.start))


@pytest.mark.parametrize("pairs", [1, 2, 4])
@pytest.mark.parametrize(("window", "horizon"), [(24, 12), (5, 1), (10, 3)])
def test_no_test_or_validation_step_is_inside_any_training_window(pairs, window, horizon):
    blocks = time_blocks(526, 0.2, 0.15, 0.5, pairs)
    span = window + horizon
    split = window_split(blocks, span, num_workers=2)
    steps = {part: set() for part in ("red", "blue", "val", "test")}
    for part in steps:
        for start in getattr(split, part):
            steps[part].update(range(start, start + span))
    held_out = steps["val"] | steps["test"]
    assert not (steps["red"] | steps["blue"]) & held_out
    assert not steps["val"] & steps["test"] and not steps["red"] & steps["blue"]
    for part in steps:  # every window lies inside one block of its part
        inside = [range(b.start, b.stop) for b in blocks if b.part == part]
        for start in getattr(split, part):
            assert any(start in r and start + span - 1 in r for r in inside)


def test_a_block_too_short_for_one_window_is_refused_with_the_sizes():
    blocks = time_blocks(100, 0.2, 0.1, 0.5, 4)
    with pytest.raises(DataError, match=r"the val block \(8 steps\) holds no whole window"):
        window_split(blocks, 12, num_workers=1)
    blocks = time_blocks(100, 0.2, 0.5, 0.5, 4)
    with pytest.raises(DataError, match=r"the red blocks \(5, 5, 5, 5 steps\) hold no"):
        window_split(blocks, 8, num_workers=1)


def test_forecast_metrics_and_the_mase_scale():
    truth = np.array([[[1.0], [2.0]], [[3.0], [4.0]]])
    predicted = truth + np.array([[[1.0], [-1.0]], [[0.0], [2.0]]])
    scores = forecast_metrics(predicted, truth, scale=np.array([2.0]))
    assert scores["mae"] == pytest.approx(1.0) and scores["mase"] == pytest.approx(0.5)
    assert scores["rmse"] == pytest.approx(np.sqrt(6 / 4))
    smape = 100 * np.mean([2 * 1 / 3, 2 * 1 / 3, 0.0, 2 * 2 / 10])
    assert scores["smape"] == pytest.approx(smape)
    line = np.arange(50, dtype=float)[:, None] * 3.0
    blocks = time_blocks(50, 0.2, 0.1, 0.5, 2)
    assert naive_scale(line, blocks) == pytest.approx([3.0])


def test_the_seasonal_naive_baseline_is_exact_on_a_pure_season_and_the_naive_one_is_not():
    season = np.tile([1.0, 5.0, 2.0, 8.0], 40)  # a season of 4 steps
    frame = pd.DataFrame({"t": np.arange(len(season)), "y": season})
    cfg = DataConfig(kind="series", source="x.csv", time="t", target="y", window=8, horizon=6)
    series = prepare_series(frame, cfg, val_fraction=0.2, red_ratio=0.5, workers=1)
    windows, truth = series.dataset.features[series.split.test], series.dataset.labels
    scores = baselines(windows, truth[series.split.test], [0], series.naive_scale, season=4)
    assert scores["baseline/seasonal_naive_mae"] == 0.0
    assert scores["baseline/naive_mae"] > 1.0
    test = series.split.test
    forecasts = baseline_forecasts(series.dataset.features[test], 6, [0], season=4)
    errors = errors_by_step(forecasts, truth[test])
    assert errors["step"] == [1, 2, 3, 4, 5, 6] and errors["mae"]["seasonal_naive"] == [0.0] * 6
    assert np.mean(errors["mae"]["naive"]) == pytest.approx(scores["baseline/naive_mae"])
    assert set(series.reference_metrics) == {
        f"baseline/naive_{m}" for m in ("mae", "rmse", "smape", "mase")
    }  # no data.season: no seasonal baseline


def test_windows_hold_every_column_and_labels_the_following_target_steps():
    frame = pd.DataFrame(
        {"t": np.arange(40)[::-1], "y": np.arange(40.0)[::-1], "x": np.arange(40.0)[::-1] * 10}
    )  # given in reverse: ordered by time
    cfg = DataConfig(
        kind="series", source="x.csv", time="t", target="y", window=5, horizon=2, blocks=1
    )
    dataset = prepare_series(frame, cfg, val_fraction=0.25, red_ratio=0.5, workers=1).dataset
    windows = len(frame) - (cfg.window + cfg.horizon) + 1  # every start with a whole window
    assert dataset.features.shape == (windows, 5, 3) and dataset.labels.shape == (windows, 2, 1)
    assert dataset.features[3, :, 0].tolist() == [3, 4, 5, 6, 7]
    assert dataset.features[3, :, 1].tolist() == [30, 40, 50, 60, 70]
    assert (dataset.features[..., -1] == 1).all()
    assert dataset.labels[3, :, 0].tolist() == [8, 9]
    assert dataset.num_outputs == 2 and dataset.task == "forecast"


@pytest.mark.parametrize(
    ("change", "settings", "message"),
    [
        (
            lambda f: f.assign(y=f.y.where(f.t != 7)),
            {},
            r"NaN or infinite values in x.csv: y \(1\)",
        ),
        (lambda f: f.assign(t=f.t.where(f.t != 7, 8)), {}, "1 duplicate 't' value"),
        (lambda f: f.assign(x="a"), {}, "not numeric: x"),
        (lambda f: f, {"target": "z"}, r"column\(s\) \['z'\] not found"),
        (lambda f: f, {"target": None}, "needs data.target"),
        (lambda f: f.head(12), {}, "12 steps, fewer than data.window \\+ data.horizon \\(13\\)"),
        (lambda f: f.assign(t="x"), {}, "must hold numbers or dates"),
        (lambda f: f.assign(y=1.0), {"drop": ["x"]}, "constant over the training blocks"),
    ],
)
def test_bad_series_data_is_one_data_error(change, settings, message):
    frame = pd.DataFrame({"t": np.arange(200), "y": np.sin(np.arange(200)), "x": 1.0})
    base = {"kind": "series", "source": "x.csv", "time": "t", "target": "y", "window": 10}
    cfg = DataConfig(**{**base, "horizon": 3, **settings})
    with pytest.raises(DataError, match=message):
        prepare_series(change(frame), cfg, val_fraction=0.1, red_ratio=0.5, workers=1)


def test_series_settings_are_checked_with_the_config():
    for data, message in [
        ({"kind": "series", "source": "co2"}, "needs data.window"),
        ({"kind": "series", "source": "co2", "window": 6, "season": 12}, "at most data.window"),
        ({"window": 6, "horizon": 2}, "data.window, data.horizon apply to data.kind series only"),
        ({"kind": "series", "window": 6, "id": "x"}, "data.id applies to data.kind sequence only"),
        ({"kind": "series", "window": 6, "max_one_hot": 3}, "data.max_one_hot applies to"),
    ]:
        with pytest.raises(ConfigError, match=message):
            validate({"data": data, "model": {"kind": "lstm"}})
    with pytest.raises(DataError, match="model.kind mlp takes data.kind: table"):
        plan_run(validate({"data": {"kind": "series", "source": "co2", "window": 4}}))


def test_the_bundled_co2_series_is_monthly_and_complete():
    cfg = forecaster_config()
    plan = forecaster_plan()
    raw = plan.dataset.raw
    assert raw is not None and len(raw) == 526 and list(raw.columns) == ["month", "co2"]
    assert raw.co2.notna().all() and raw.month.is_monotonic_increasing
    # The split's sizes from the config: T is the last test_fraction of the steps and V the
    # val_fraction of the rest; data.blocks pairs share what is left, red taking red_ratio of
    # each pair; a block of n steps holds n - (window + horizon) + 1 windows.
    data, strategy, steps = cfg.data, cfg.strategy, len(raw)
    test = round(steps * data.test_fraction)
    val = round((steps - test) * strategy.val_fraction)
    pool = steps - test - val
    pairs = [
        round((i + 1) * pool / data.blocks) - round(i * pool / data.blocks)
        for i in range(data.blocks)
    ]
    reds = [round(pair * strategy.red_ratio) for pair in pairs]
    blues = [pair - red for pair, red in zip(pairs, reds, strict=True)]

    def windows(*blocks: int) -> int:
        return sum(block - (data.window + data.horizon) + 1 for block in blocks)

    assert {k: len(getattr(plan.split, k)) for k in ("test", "val", "red", "blue")} == {
        "test": windows(test),
        "val": windows(val),
        "red": windows(*reds),
        "blue": windows(*blues),
    }
    naive, seasonal = (
        plan.reference_metrics[f"baseline/{name}_mase"] for name in ("naive", "seasonal_naive")
    )
    assert seasonal < naive  # a yearly cycle


def test_the_standardization_is_fitted_on_the_training_blocks_only():
    plan = forecaster_plan()
    train, test = plan.split.train, plan.split.test
    model = build_model(plan.spec)
    family_of("lstm").fit(model, plan.dataset.features[train], None)
    steps = plan.dataset.features[train][..., 0].ravel()
    assert float(model.get_buffer("input_mean")[0]) == pytest.approx(steps.mean(), rel=1e-5)
    shifted = plan.dataset.features.copy()
    shifted[test] += 1000.0  # T's values do not move the buffers
    other = build_model(plan.spec)
    family_of("lstm").fit(other, shifted[train], None)
    assert torch.equal(other.get_buffer("input_mean"), model.get_buffer("input_mean"))


@pytest.mark.parametrize("scaling", ["last", "global"])
def test_a_forecaster_takes_the_series_frame_and_answers_step_by_target(tmp_path, scaling):
    plan = forecaster_plan(scaling=scaling)
    torch.manual_seed(0)
    model = build_model(plan.spec)
    family = family_of("lstm")
    family.fit(model, plan.dataset.features[plan.split.train], None)
    model, spec = load_model(save_model(tmp_path, model, spec=plan.spec))
    raw = plan.dataset.raw
    assert raw is not None
    schema = input_schema(spec)
    shuffled = raw.iloc[:40].sample(frac=1.0, random_state=0)  # ordered by month again
    values, _ = family.predict(model, spec, schema.rows(shuffled))
    last24 = raw.co2.to_numpy()[16:40]
    same, _ = family.predict(model, spec, schema.rows([[v] for v in last24]))
    assert values.shape == (1, 12, 1) and np.allclose(values, same)
    frame = as_output(spec, values)
    assert list(frame.columns) == ["step", "co2"] and frame.step.tolist() == list(range(1, 13))
    shifted, _ = family.predict(model, spec, schema.rows([[v + 50.0] for v in last24]))
    if scaling == "last":  # a level the training blocks never reached: the same changes
        assert np.allclose(shifted - 50.0, values, atol=1e-3)
    with pytest.raises(InputError, match="has 23 step"):
        schema.rows(raw.iloc[:23])
    with pytest.raises(InputError, match="missing column"):
        schema.rows(raw[["co2"]])
    with pytest.raises(InputError, match="NaN"):
        schema.rows([[float("nan")]] * 24)


FORECAST_RUN = {
    "data": {"kind": "series", "source": "co2", "window": 24, "horizon": 12, "season": 12},
    "strategy": {"val_fraction": 0.15},
    "optim": {"epochs": 8, "lr": 0.005, "batch_size": 32},
    "checkpoint": {"every_rounds": 2},
}


@pytest.mark.parametrize("kind", ["rnn", "lstm"])
def test_a_forecaster_trains_red_blue_beats_both_baselines_and_resumes_exactly(tmp_path, kind):
    run = {**FORECAST_RUN, "model": {"kind": kind, "hidden": 32}}
    expected = plain_trainer(Recorder(tmp_path / "full"), **run).run().metrics
    assert expected["test_mase"] < expected["baseline/seasonal_naive_mase"]
    assert expected["test_mase"] < expected["baseline/naive_mase"]
    first = Recorder(tmp_path / "first")
    plain_trainer(first, **run).run()
    resumed = plain_trainer(Recorder(tmp_path / "resumed"), **run)
    torch.manual_seed(12345)
    resumed.restore(first.checkpoints[0])
    assert without_timing(resumed.run().metrics) == without_timing(expected)


def test_two_targets_and_a_covariate_are_forecast_scored_and_served(tmp_path):
    import anyio
    import httpx

    from serve_apps.guard import key_digest
    from serve_apps.local_server import local_api
    from serve_apps.model_bundle import ModelBundle
    from serve_apps.settings import ServeSection
    from trainers.spec import FINAL_MODEL_DIR

    steps = np.arange(400)
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "day": pd.date_range("2020-01-01", periods=400).astype(str),  # ISO strings
            "load": np.sin(2 * np.pi * steps / 12) + 0.01 * steps,
            "price": 2 * np.cos(2 * np.pi * steps / 12) + rng.normal(0, 0.1, 400),
            "noise": rng.normal(size=400),  # a covariate: read, not forecast
        }
    )
    source = tmp_path / "energy.csv"
    frame.to_csv(source, index=False)
    data = {"kind": "series", "source": str(source), "time": "day", "target": ["load", "price"]}
    run = {
        "data": {**data, "window": 12, "horizon": 3, "season": 12},
        "model": {"kind": "gru", "hidden": 16},
        "optim": {"epochs": 10, "lr": 0.01, "batch_size": 32},
    }
    recorder = Recorder(tmp_path / "run")
    trainer = plain_trainer(recorder, **run)
    metrics = trainer.run().metrics
    assert trainer.spec.out_features == 6 and trainer.spec.feature_names == [
        "load",
        "price",
        "noise",
    ]
    assert metrics["test_mase"] < metrics["baseline/naive_mase"]
    model, spec = load_model(recorder.checkpoints[-1] / FINAL_MODEL_DIR)  # the final model
    history = frame.iloc[-12:][["load", "price", "noise"]].to_numpy().tolist()
    values, _ = family_of("gru").predict(model, spec, input_schema(spec).rows(frame))
    assert list(as_output(spec, values).columns) == ["step", "load", "price"]
    bundle = ModelBundle.from_directory(
        recorder.checkpoints[-1] / FINAL_MODEL_DIR,
        uri="models:/e/1",
        name="e",
        version="1",
        run_id="e" * 32,
    )
    api = local_api(bundle, ServeSection(max_rows=4), [key_digest("k" * 20)], None)

    async def post():
        transport = httpx.ASGITransport(app=api)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            headers = {"Authorization": f"Bearer {'k' * 20}"}
            return await client.post("/v1/predict", json={"history": history}, headers=headers)

    body = anyio.run(post).json()
    assert body["targets"] == ["load", "price"] and body["horizon"] == 3
    np.testing.assert_allclose(body["forecast"], values[0].T, rtol=1e-5)


def test_unevenly_spaced_steps_are_named_and_calendar_months_are_even():
    months = pd.Series(pd.date_range("2000-01-01", periods=30, freq="MS"))
    assert uneven_spacing(months) is None and uneven_spacing(months.astype(str)) is None
    assert uneven_spacing(pd.Series(np.arange(0, 60, 2))) is None
    gappy = pd.Series([0, 1, 2, 5, 6])
    assert uneven_spacing(gappy) == "the gaps between steps range from 1 to 3"
    days = pd.Series(pd.to_datetime(["2020-01-01", "2020-01-02", "2020-01-05", "2020-01-06"]))
    assert "1 days" in uneven_spacing(days) and "3 days" in uneven_spacing(days)
