"""Streamed tables (``data.streaming``) without Ray: the split by a row key's hash, the same
split and preprocessing as the in-memory path, P' alone fitting it, the refusals, and the loop
streaming its batches and resuming exactly mid-stream (Ray Data's stream: tests/integration/
test_streaming.py)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from orchestrator.config import RedblueConfig
from orchestrator.streaming.choice import PendingStream, streams
from orchestrator.streaming.plan import plan_from_stats
from orchestrator.streaming.rows import StreamedRows
from tests.helpers import (
    Recorder,
    folded_in_one_process,
    without_timing,
    write_partitioned_table,
)
from trainers.data.keyed_split import HashSplit
from trainers.data.splits import split_samples
from trainers.data.streamed_table import finish
from trainers.data.table_stats import TableStats
from trainers.data.tables import encode, load_table
from trainers.errors import DataError

SAMPLE_ROWS = 256


def config(source: Path, **data) -> RedblueConfig:
    return RedblueConfig.model_validate(
        {
            "data": {"source": str(source), "label": "label", "streaming": "on", **data},
            "scaling": {"num_workers": 1},
            "strategy": {"eval_rows": SAMPLE_ROWS, "eval_every": 2},
            "optim": {"epochs": 3, "batch_size": 64},
            "checkpoint": {"every_rounds": 2},
        }
    )


def folded(pending: PendingStream) -> TableStats:
    return folded_in_one_process(pending, SAMPLE_ROWS)


@pytest.fixture(scope="module")
def table(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("stream") / "table"
    write_partitioned_table(folder)
    return folder


def test_hash_parts_are_stable_shared_as_configured_and_sharded_evenly():
    how = HashSplit(test_fraction=0.2, val_fraction=0.25, red_ratio=0.5, seed=3)
    keys = np.arange(200_000)
    parts = how.parts(how.hashes(keys))
    assert np.array_equal(parts, how.parts(how.hashes(keys)))  # stable
    shares = np.bincount(parts, minlength=4) / len(keys)
    assert np.allclose(shares, [0.2, 0.2, 0.3, 0.3], atol=0.005)
    other_seed = dataclasses.replace(how, seed=4)
    assert (other_seed.parts(other_seed.hashes(keys)) != parts).mean() > 0.4
    hashes = how.hashes(keys)
    for world in (2, 3):
        shards = HashSplit.shards(hashes, world)
        assert np.allclose(np.bincount(shards) / len(keys), 1 / world, atol=0.01)
    assert np.array_equal(how.parts(hashes[::7]), parts[::7])  # a row's part is its own


def test_streamed_and_in_memory_paths_split_and_fit_alike(table):
    cfg = config(table)
    pending = PendingStream.open(cfg)
    stats = folded(pending)
    streamed = finish(stats, pending.layout)
    memory = RedblueConfig.model_validate(
        {**cfg.model_dump(), "data": {**cfg.data.model_dump(), "streaming": "off", "split": "hash"}}
    )
    in_memory = load_table(memory.data)
    split = split_samples(in_memory, memory)
    assert streamed.sizes == {
        name: len(getattr(split, name)) for name in ("test", "val", "red", "blue")
    }
    assert streamed.classes == in_memory.classes == ["hi", "lo", "mid"]
    dataset = encode(in_memory, split.train)
    fitted, expected = streamed.preprocessing, dataset.preprocessing
    assert [c.name for c in fitted.columns] == [c.name for c in expected.columns]
    for got, want in zip(fitted.columns, expected.columns, strict=True):
        assert (got.type, got.missing, got.categories, got.had_missing) == (
            want.type,
            want.missing,
            want.categories,
            want.had_missing,
        ), got.name
        if want.fill is None:
            assert got.fill is None, got.name
        else:
            assert got.fill == pytest.approx(want.fill, rel=1e-9, abs=1e-12), got.name
    dense = dataset.features[split.train][:, : len(expected.dense_names)].astype(np.float64)
    std = dense.std(axis=0)
    standardization = streamed.standardization
    assert np.allclose(standardization.input_mean, dense.mean(axis=0), atol=1e-5)
    assert np.allclose(standardization.input_std, np.where(std > 1e-8, std, 1.0), atol=1e-5)
    assert streamed.sizes["red"] + streamed.sizes["blue"] == len(split.train)
    three = config(table).model_dump()  # four workers
    three["scaling"]["num_workers"] = 4
    wider = PendingStream.open(RedblueConfig.model_validate(three))
    assert finish(folded(wider), wider.layout).sizes == streamed.sizes  # whatever the workers


def test_each_parts_sample_is_its_rows_of_least_sample_hash_over_the_table(table):
    """Folded batch by batch (each batch's sample drawn below the sample so far), a part's
    sample is its SAMPLE_ROWS rows of least sample hash over the whole table, in order."""
    from orchestrator.streaming.rows import keyed_batches
    from trainers.data.table_stats import SAMPLE_COLUMN, _sample_hashes

    pending = PendingStream.open(config(table))
    batches = [
        keyed
        for path in pending.parts.paths
        for keyed in keyed_batches(pending.parts, pending.layout, path)
    ]
    hashes = np.concatenate([_sample_hashes(keyed.hashes) for keyed in batches])
    parts = np.concatenate([keyed.parts for keyed in batches])
    stats = folded(pending)
    assert len(batches) > 2 and np.bincount(parts).max() > 2 * SAMPLE_ROWS
    for code, sample in stats.samples.items():
        least = np.sort(hashes[parts == code])[:SAMPLE_ROWS]
        assert np.array_equal(sample[SAMPLE_COLUMN].to_numpy(), least), code


def test_values_only_in_the_test_part_change_no_fitted_value(table, tmp_path):
    cfg = config(table)
    memory = RedblueConfig.model_validate(
        {**cfg.model_dump(), "data": {**cfg.data.model_dump(), "streaming": "off", "split": "hash"}}
    )
    in_test = split_samples(load_table(memory.data), memory).test  # every row has a label
    changed = pd.concat([pd.read_parquet(p) for p in sorted(table.rglob("*.parquet"))])
    changed = changed.reset_index(drop=True)
    changed.loc[in_test, "a"] = 1e6
    changed.loc[in_test, "color"] = "purple"
    folder = tmp_path / "changed"
    for year, part in ((2024, changed.iloc[:1500]), (2025, changed.iloc[1500:])):
        (folder / f"year={year}").mkdir(parents=True)
        part.to_parquet(folder / f"year={year}" / "part-0.parquet", row_group_size=700)
    pending = PendingStream.open(cfg)
    before = finish(folded(pending), pending.layout)
    changed_pending = PendingStream.open(config(folder))
    after = finish(folded(changed_pending), changed_pending.layout)
    assert after.preprocessing == before.preprocessing
    assert np.array_equal(after.standardization.input_mean, before.standardization.input_mean)
    assert after.sizes == before.sizes
    assert (after.sample.raw["a"] == 1e6).any()  # the changed rows are there, in T's sample


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"strategy": {"clean": "report"}}, "strategy.clean report"),
        ({"data": {"label_noise": 0.2}}, "data.label_noise"),
        ({"data": {"train_fraction": 0.5}}, "data.train_fraction"),
    ],
)
def test_streaming_on_refuses_what_needs_every_row_in_memory(table, change, named):
    cfg = config(table).model_dump()
    for section, values in change.items():
        cfg[section] = {**cfg[section], **values}
    with pytest.raises(DataError, match=f"{named}.*needs every row in memory"):
        streams(RedblueConfig.model_validate(cfg))


def test_streaming_refuses_bundled_data_and_auto_keeps_small_files_in_memory(table):
    with pytest.raises(DataError, match="bundled data set"):
        streams(RedblueConfig.model_validate({"data": {"streaming": "on"}}))
    assert not streams(config(table, streaming="auto"))  # 3,000 rows fit any worker
    assert streams(config(table, streaming="auto", stream_above=1e-9))
    with pytest.raises(ValueError, match="streams tables only"):
        RedblueConfig.model_validate(
            {"data": {"kind": "series", "window": 4, "streaming": "on", "source": "co2"}}
        )


def test_a_missing_label_column_is_named(table):
    with pytest.raises(DataError, match="label column 'nope' not found"):
        PendingStream.open(config(table, label="nope"))


class LocalRows(StreamedRows):
    """``StreamedRows``' stream without Ray Data: the same files, order, shard, encoding,
    shuffle and batches, each file encoded in this process."""

    @classmethod
    def of(cls, rows: StreamedRows) -> LocalRows:
        return cls(*(getattr(rows, field.name) for field in dataclasses.fields(rows)))

    def _file_rows(self, path, encode):
        for piece in encode({"path": [path]}):
            yield piece["features"], piece["labels"], piece["parts"]


def streamed_trainer(source: Path, report):
    from trainers.engine.plain import PlainEngine
    from trainers.loop.trainer import Trainer, build_replicas

    cfg = config(source)
    pending = PendingStream.open(cfg)
    plan = plan_from_stats(cfg, pending.parts, pending.layout, folded(pending))
    assert plan.stream is not None
    stream = dataclasses.replace(plan.stream, rows=LocalRows.of(plan.stream.rows))
    plan = dataclasses.replace(plan, stream=stream)

    def make(model, name, clock, optim):
        return PlainEngine(model, optim=optim, grad_accum_steps=1, clock=clock)

    return Trainer(plan, build_replicas(plan, make), report)


def test_the_loop_streams_its_batches_and_resumes_exactly_mid_stream(table, tmp_path):
    full = streamed_trainer(table, Recorder(tmp_path / "full"))
    expected = full.run().metrics
    assert expected["test_accuracy"] > 0.8
    first = Recorder(tmp_path / "first")
    streamed_trainer(table, first).run()
    resumed = streamed_trainer(table, Recorder(tmp_path / "resumed"))
    torch.manual_seed(12345)
    resumed.restore(first.checkpoints[0])  # after round 2, inside the first epoch of a half
    positions = resumed.streams.positions()
    assert positions and all(batches > 0 for _, batches in positions.values()), positions
    assert without_timing(resumed.run().metrics) == without_timing(expected)


def test_a_tune_report_without_a_decision_carries_the_latest_val_loss():
    from orchestrator.training.worker import tune_val_loss

    decided: dict[str, float] = {}
    reports = [
        {"round": 1.0, "val/slice_loss": 0.9},  # before any decision: the slice's
        {"round": 2.0, "val_loss": 0.8},
        {"round": 3.0, "val/slice_loss": 0.7},  # then the latest decided value
        {"best_round": 2.0, "test_accuracy": 0.9},  # the final report is left alone
    ]
    for report in reports:
        tune_val_loss(report, decided)
    assert [r.get("val_loss") for r in reports] == [0.9, 0.8, 0.8, None]


def test_kept_statistics_plan_the_same_run_and_a_rewritten_file_is_a_new_entry(
    table, tmp_path, monkeypatch
):
    import shutil

    from orchestrator.streaming.stats_cache import StatsCache

    monkeypatch.setenv("REDBLUE_CACHE", str(tmp_path / "cache"))
    copy = tmp_path / "table"
    shutil.copytree(table, copy)
    cfg = config(copy, features={"c": {"missing": "median"}})  # kept values, too
    pending = PendingStream.open(cfg)
    stats = folded(pending)
    cache = StatsCache.of(pending.parts, pending.layout, SAMPLE_ROWS)
    assert cache.load() is None
    cache.save(stats)
    kept = cache.load()
    assert kept is not None
    fresh, again = (plan_from_stats(cfg, pending.parts, pending.layout, s) for s in (stats, kept))
    assert fresh.stream.sizes == again.stream.sizes
    assert fresh.stream.rows.preprocessing == again.stream.rows.preprocessing
    assert fresh.stream.rows.classes == again.stream.rows.classes
    for a, b in zip(
        dataclasses.astuple(fresh.stream.standardization),
        dataclasses.astuple(again.stream.standardization),
        strict=True,
    ):
        assert np.array_equal(a, b)
    assert np.array_equal(fresh.dataset.features, again.dataset.features)
    assert np.array_equal(fresh.split.red, again.split.red)
    other_split = config(copy, features={"c": {"missing": "median"}}, test_fraction=0.3)
    assert (
        StatsCache.of(pending.parts, PendingStream.open(other_split).layout, SAMPLE_ROWS) != cache
    )
    rewritten = next(copy.rglob("*.parquet"))
    pd.read_parquet(rewritten).iloc[:-1].to_parquet(rewritten)
    assert StatsCache.of(PendingStream.open(cfg).parts, pending.layout, SAMPLE_ROWS) != cache


def test_one_pass_scores_several_parts_as_separate_passes_would(table, tmp_path):
    """The end of a streamed run scores T, V and P' (and each replica on T) in one pass."""
    from trainers.loop.streamed import summed_parts

    trainer = streamed_trainer(table, Recorder(tmp_path))
    red, blue = trainer.replicas["red"], trainer.replicas["blue"]
    stream, objective = trainer.evaluator.stream, trainer.objective
    width = trainer.evaluator.features.shape[1]
    together = summed_parts(
        stream,
        {"red": (red, ("test",)), "blue": (blue, ("test",)), "pool": (red, ("red", "blue"))},
        objective,
        width,
        100,
    )
    for name, replica, parts in (
        ("red", red, ("test",)),
        ("blue", blue, ("test",)),
        ("pool", red, ("red", "blue")),
    ):
        alone = summed_parts(stream, {name: (replica, parts)}, objective, width, 100)[name]
        assert together[name].keys() == alone.keys()
        for key in alone:
            assert np.allclose(together[name][key], alone[key], rtol=1e-5), key  # float32 sums
    assert together["pool"]["loss_count"] == stream.sizes["red"] + stream.sizes["blue"]
    assert together["red"]["loss_count"] == stream.sizes["test"]
