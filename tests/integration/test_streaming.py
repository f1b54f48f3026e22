"""A table streamed into the workers with Ray Data (``data.streaming: on``) on the session's
Ray: a hive-partitioned Parquet folder trains end to end, each worker's stream is the same on
every read, skips exactly, and shares a part out without overlap, a killed worker resumes
mid-stream exactly, and ``redblue compare`` streams each child (the split, the fit, the kept
statistics and the loop's resume without Ray: tests/unit/test_stream_planning.py; from S3 on a
cluster, trained, swept and predicted: tests/integration/test_cluster.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import numpy as np
import pytest

from tests.helpers import (
    folded_in_one_process,
    kill_a_worker_after_first_checkpoint,
    write_partitioned_table,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    folder = tmp_path_factory.mktemp("streamed") / "table"
    write_partitioned_table(folder, rows=4000)
    return folder


def streamed_config(workspace, table, name: str, **sections):
    from orchestrator.config import validate

    return validate(
        {
            "name": name,
            "data": {"source": str(table), "label": "label", "streaming": "on"},
            "model": {"hidden": [32]},
            "optim": {"epochs": 4, "batch_size": 64, "lr": 0.003},
            "strategy": {"eval_every": 4, "eval_rows": 256},
            "scaling": {"num_workers": 2, "cpus_per_worker": 1},
            "checkpoint": {"every_rounds": 4},
            "run": {"storage_path": str(workspace / "ray_results")},
            **sections,
        }
    )


@pytest.fixture(scope="module")
def streamed(ray_session, workspace, table):
    """(config, plan, exit code, summary) of a streamed red-blue run on two workers."""
    from orchestrator.streaming.choice import PendingStream
    from orchestrator.streaming.plan import plan_streamed
    from orchestrator.training.run import train

    cfg = streamed_config(workspace, table, "streamed")
    pending = PendingStream.open(cfg)
    code, summary = train(cfg, pending, None)
    return cfg, plan_streamed(cfg, pending.parts, pending.layout), code, summary


def test_a_partitioned_folder_trains_streamed_and_is_recorded(streamed, mlflow_client):
    cfg, plan, code, summary = streamed
    assert code == 0 and summary is not None
    assert summary.metrics["test_accuracy"] > 0.8, summary.metrics
    run = mlflow_client.get_run(summary.run_id)
    assert run.data.params["data.streamed"] == "true"
    assert int(run.data.params["data.rows.test"]) == plan.stream.sizes["test"]
    assert "year" in plan.spec.feature_names  # the hive partition is a column


def test_each_workers_stream_repeats_skips_exactly_and_shares_the_part(streamed):
    """... and its one-file pipelines leave nothing behind that would grow with the table: no
    record in Ray Data's statistics actor, no cached map task, no cached actor method table."""
    import ray
    from ray.actor import _ActorClassMethodMetadata
    from ray.data._internal.remote_fn import CACHED_FUNCTIONS
    from ray.data._internal.stats import get_or_create_stats_actor

    _, plan, _, _ = streamed
    rows = plan.stream.rows
    stats = get_or_create_stats_actor()
    datasets = len(ray.get(stats.get_datasets.remote()))

    def read(rank: int, skip: int = 0, epoch: int = 1) -> list:
        return list(
            rows.batches(("red",), epoch=epoch, batch_size=50, rank=rank, world_size=2, skip=skip)
        )

    first, again = read(0), read(0)
    assert len(first) > 5
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(first, again, strict=True))
    skipped = read(0, skip=3)
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(first[3:], skipped, strict=True))
    other = read(1)
    count = sum(len(b[1]) for b in first) + sum(len(b[1]) for b in other)
    assert count == plan.stream.sizes["red"]  # the shards cover the part, once
    mine = {tuple(row) for b in first for row in b[0]}
    assert not mine & {tuple(row) for b in other for row in b[0]}
    next_epoch = read(0, epoch=2)
    assert not np.array_equal(next_epoch[0][0], first[0][0])  # another order each epoch
    assert len(ray.get(stats.get_datasets.remote())) == datasets
    assert not [key for key in CACHED_FUNCTIONS if key[0].__name__ == "_map_task"]
    assert not _ActorClassMethodMetadata._cache


def test_a_killed_worker_resumes_mid_stream_exactly(workspace, table, streamed, mlflow_client):
    """A worker SIGKILLed after the first checkpoint of a streamed run: the workers restart from
    it, each at its place in its streams, and the run ends with the metrics of the run never
    stopped (the ``streamed`` fixture's, the same config)."""
    from orchestrator.streaming.choice import PendingStream
    from orchestrator.training.run import train

    storage = workspace / "ray_results"
    cfg = streamed_config(
        workspace, table, "stream-killed", run={"storage_path": str(storage), "max_failures": 1}
    )
    killed: list[int] = []
    killer = threading.Thread(
        target=kill_a_worker_after_first_checkpoint, args=(storage, "stream-killed", killed)
    )
    killer.start()
    code, summary = train(cfg, PendingStream.open(cfg), None)
    killer.join()
    assert killed, "no worker was killed"
    assert code == 0 and summary is not None
    assert mlflow_client.get_run(summary.run_id).data.tags["redblue.restarts"] == "1"
    whole = streamed[3].metrics
    for key in ("test_loss", "test_accuracy", "red/test_loss", "blue/test_loss", "val_loss"):
        assert summary.metrics[key] == whole[key], key


def test_the_pass_folds_the_files_as_one_process_would_and_names_a_bad_one(
    ray_session, workspace, table, tmp_path, capsys
):
    """The statistics pass (Ray Data tasks of a file each, or of every file in turn, folded
    on the driver) gives the sizes, classes, moments and samples that one process folding every
    batch gives, and says how far it is; a file with an infinite value fails it with a
    DataError that names the file."""
    import shutil

    import pandas as pd

    from orchestrator.streaming.choice import PendingStream
    from orchestrator.streaming.plan import table_stats
    from trainers.data.table_stats import SAMPLE_COLUMN
    from trainers.errors import DataError

    pending = PendingStream.open(streamed_config(workspace, table, "pass"))
    here = folded_in_one_process(pending, 256)
    assert len(pending.parts.paths) > 1 and max(here.rows) > 256  # a sample is a part's least
    for tasks in (None, 1):
        capsys.readouterr()
        on_ray = table_stats(pending.parts, pending.layout, 256, tasks, progress_every_s=0.0)
        files, rows = len(pending.parts.paths), sum(here.rows)
        said = capsys.readouterr().err
        assert f"{files} of {files} files folded, {rows:,} rows" in said, said
        assert on_ray.rows == here.rows and on_ray.label_counts == here.label_counts
        assert on_ray.gaps == here.gaps and on_ray.columns["color"] == here.columns["color"]
        for name in ("a", "b", "c", "d", "flag"):
            got, want = on_ray.columns[name].present, here.columns[name].present
            assert (got.n, got.mean, got.m2) == pytest.approx((want.n, want.mean, want.m2)), name
        for code, sample in here.samples.items():
            assert len(sample) == min(256, here.rows[code]), code
            pd.testing.assert_frame_equal(on_ray.samples[code], sample)
            assert sample[SAMPLE_COLUMN].is_monotonic_increasing

    broken = tmp_path / "table"
    shutil.copytree(table, broken)
    bad = pd.read_parquet(table / "year=2025" / "part-0.parquet").head(50).reset_index(drop=True)
    bad.loc[7, "a"] = np.inf
    (broken / "year=2026").mkdir()
    bad.to_parquet(broken / "year=2026" / "part-0.parquet", index=False)
    pending = PendingStream.open(streamed_config(workspace, broken, "pass-bad"))
    with pytest.raises(DataError, match=r"year=2026/part-0\.parquet: .*infinite"):
        table_stats(pending.parts, pending.layout, 256)


def test_compare_streams_each_child_and_pairs_them(ray_session, table, tmp_path, mlflow_client):
    """``redblue compare`` over the streamed folder, on the session's Ray: red-blue and standard
    (one seed) each stream the table in a child run, and the parent pairs them."""
    config = tmp_path / "compare.yaml"
    config.write_text(
        "name: stream-compare\n"
        f"data: {{source: '{table}', label: label, streaming: 'on'}}\n"
        "model: {hidden: [16]}\n"
        "optim: {epochs: 1, batch_size: 64, lr: 0.003}\n"
        "strategy: {eval_rows: 256}\n"
        "scaling: {num_workers: 1, cpus_per_worker: 1}\n"
    )
    command = [sys.executable, "-m", "orchestrator.cli", "compare", str(config), "--seeds", "1"]
    command += ["--strategies", "red_blue"]
    env = {**os.environ, "RAY_ADDRESS": ray_session}
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    experiment = mlflow_client.get_experiment_by_name("stream-compare")
    (parent,) = mlflow_client.search_runs(
        [experiment.experiment_id], filter_string="tags.`redblue.kind` = 'compare'"
    )
    children = mlflow_client.search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'",
    )
    assert sorted(run.data.tags["redblue.strategy"] for run in children) == ["red_blue", "standard"]
    assert parent.data.params["data.streamed"] == "true"  # planned from the pass's statistics
    for run in children:
        assert run.info.status == "FINISHED"
        assert run.data.params["data.streaming"] == "on"
        assert run.data.params["data.streamed"] == "true"  # its own pass, as a run records it
        for part in ("test", "val", "red", "blue"):
            assert run.data.params[f"data.rows.{part}"] == parent.data.params[f"data.rows.{part}"]
        assert run.data.metrics["test_accuracy"] > 0.6, run.data.metrics
    assert "delta/test_accuracy_mean" in parent.data.metrics  # one strategy beside standard
