import numpy as np
import pandas as pd
import pytest

from trainers.config import DataConfig
from trainers.data.batches import batch_indices, shard
from trainers.data.splits import make_split
from trainers.data.tables import load_dataset
from trainers.errors import DataError


def split_of(source="digits", seed=0, workers=2, red_ratio=0.5):
    dataset = load_dataset(DataConfig(source=source))
    return dataset, make_split(
        dataset,
        test_fraction=0.2,
        val_fraction=0.1,
        red_ratio=red_ratio,
        seed=seed,
        num_workers=workers,
    )


@pytest.mark.parametrize(
    "source, task",
    [
        ("digits", "classification"),
        ("breast_cancer", "classification"),
        ("wine", "classification"),
        ("diabetes", "regression"),
    ],
)
def test_bundled_sets_and_task_inference(source, task):
    assert load_dataset(DataConfig(source=source)).task == task


def test_split_is_disjoint_complete_and_deterministic():
    dataset, split = split_of()
    parts = [split.test, split.val, split.red, split.blue]
    assert sum(len(p) for p in parts) == len(dataset.labels)
    assert len(np.unique(np.concatenate(parts))) == len(dataset.labels)
    assert split.fingerprint() == split_of()[1].fingerprint()
    assert split.fingerprint() != split_of(seed=1)[1].fingerprint()


def test_red_ratio_and_stratification():
    dataset, split = split_of(red_ratio=0.3)
    assert abs(len(split.red) / len(split.train) - 0.3) < 0.01
    red_share = np.bincount(dataset.labels[split.red]) / len(split.red)
    all_share = np.bincount(dataset.labels) / len(dataset.labels)
    assert np.abs(red_share - all_share).max() < 0.02


def test_shards_partition_a_part():
    part = np.arange(11)
    shards = [shard(part, rank, 3) for rank in range(3)]
    assert sorted(np.concatenate(shards).tolist()) == part.tolist()


def test_batches_cover_each_epoch_and_are_stateless():
    part = np.arange(10) * 7
    epoch = [batch_indices(part, 4, i, (0, 1)) for i in range(3)]
    assert [len(b) for b in epoch] == [4, 4, 2]
    assert sorted(np.concatenate(epoch).tolist()) == part.tolist()
    assert np.array_equal(batch_indices(part, 4, 4, (0, 1)), batch_indices(part, 4, 4, (0, 1)))


def csv(tmp_path, frame):
    path = tmp_path / "data.csv"
    frame.to_csv(path, index=False)
    return str(path)


def good_frame(n=60):
    rng = np.random.default_rng(0)
    return pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n), "y": np.arange(n) % 2})


def test_csv_and_parquet_files(tmp_path):
    frame = good_frame()
    parquet = tmp_path / "data.parquet"
    frame.to_parquet(parquet)
    for source in (csv(tmp_path, frame), str(parquet)):
        dataset = load_dataset(DataConfig(source=source, label="y"))
        assert dataset.features.shape == (60, 2) and dataset.task == "classification"


@pytest.mark.parametrize(
    "mutate, label, expected",
    [
        (lambda f: f, "missing", "label column 'missing' not found"),
        (lambda f: f.assign(a=[np.inf] + list(f.a[1:])), "y", "infinite values.*column a"),
        (lambda f: f.assign(y=[None] * len(f)), "y", "label column 'y' has no values"),
        (lambda f: f.assign(y=0), "y", "single class"),
    ],
)
def test_bad_tables_name_the_problem(tmp_path, mutate, label, expected):
    with pytest.raises(DataError, match=expected):
        load_dataset(DataConfig(source=csv(tmp_path, mutate(good_frame())), label=label))


def test_missing_file_and_unknown_source(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_dataset(DataConfig(source=str(tmp_path / "nope.csv"), label="y"))
    with pytest.raises(DataError, match="data source not found: .*mnist .a bundled data set is"):
        load_dataset(DataConfig(source="mnist"))


def test_too_small_for_the_split(tmp_path):
    dataset = load_dataset(DataConfig(source=csv(tmp_path, good_frame(12)), label="y"))
    with pytest.raises(DataError, match="too small"):
        make_split(
            dataset, test_fraction=0.2, val_fraction=0.1, red_ratio=0.5, seed=0, num_workers=4
        )


def fixed_split_table(tmp_path, roles) -> str:
    """A CSV of 120 rows, two classes, and a ``fold`` column of ``roles`` (cycled)."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.normal(size=120), "b": rng.normal(size=120)})
    frame["y"] = np.arange(120) % 2
    frame["fold"] = [roles[i % len(roles)] for i in range(120)]
    path = tmp_path / "fixed.csv"
    frame.to_csv(path, index=False)
    return str(path)


def fixed_cfg(source: str, **data):
    from orchestrator.config import validate

    return validate({"data": {"source": source, "label": "y", "split_column": "fold", **data}})


def test_a_split_column_fixes_test_and_validation_and_is_not_a_feature(tmp_path):
    """data.split_column: T and V are exactly the rows marked test and val (case and spaces
    aside), red and blue split the train rows, and the column is not a feature."""
    from trainers.loop.plan import plan_run

    roles = ["train", "train", " Test", "train", "val", "TRAIN"]
    plan = plan_run(fixed_cfg(fixed_split_table(tmp_path, roles)))
    position = np.arange(120) % 6
    assert np.array_equal(plan.split.test, np.flatnonzero(position == 2))
    assert np.array_equal(plan.split.val, np.flatnonzero(position == 4))
    train = np.flatnonzero(np.isin(position, [0, 1, 3, 5]))
    assert np.array_equal(np.sort(np.concatenate([plan.split.red, plan.split.blue])), train)
    assert "fold" not in plan.dataset.feature_names


def test_without_val_rows_validation_is_drawn_from_the_train_rows(tmp_path):
    from trainers.loop.plan import plan_run

    plan = plan_run(fixed_cfg(fixed_split_table(tmp_path, ["train", "train", "train", "test"])))
    test = np.arange(120)[3::4]
    assert np.array_equal(plan.split.test, test)
    assert len(plan.split.val) == 9  # strategy.val_fraction 0.1 of the 90 train rows
    assert not set(plan.split.val) & set(test)
    pool = set(plan.split.val) | set(plan.split.red) | set(plan.split.blue)
    assert pool == set(range(120)) - set(test)


@pytest.mark.parametrize(
    "roles, message",
    [
        (["train", "maybe", "test"], "data.split_column 'fold' holds 'maybe'; its values must be"),
        (["train", "val"], "data.split_column 'fold' marks nothing test"),
    ],
)
def test_a_split_column_with_other_values_or_no_test_rows_is_refused(tmp_path, roles, message):
    from trainers.loop.plan import plan_run

    with pytest.raises(DataError, match=message):
        plan_run(fixed_cfg(fixed_split_table(tmp_path, roles)))


def test_a_split_column_is_refused_for_a_series_and_beside_data_split():
    from orchestrator.config import ConfigError, validate

    series = {"kind": "series", "source": "co2", "window": 24, "split_column": "fold"}
    with pytest.raises(ConfigError, match="a series is split by time"):
        validate({"data": series})
    with pytest.raises(ConfigError, match="both choose the split"):
        validate({"data": {"source": "digits", "split_column": "fold", "split": "hash"}})
