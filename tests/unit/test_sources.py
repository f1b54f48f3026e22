"""data.source as users keep their data: a file, a folder of parts (hive partitions included),
a glob, a URI; on a loopback S3 server too (moto). Each problem is one DataError naming it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tests.helpers import Recorder, loopback_s3, plain_trainer
from trainers.data.sources import read_table
from trainers.errors import DataError

FRAME = pd.DataFrame({"a": np.arange(12.0), "b": list("xyz") * 4, "y": np.arange(12) % 2})


@pytest.fixture()
def folders(tmp_path):
    (tmp_path / "parts").mkdir()
    FRAME.iloc[:6].to_parquet(tmp_path / "parts" / "part-0.parquet")
    FRAME.iloc[6:].to_parquet(tmp_path / "parts" / "part-1.parquet")
    (tmp_path / "parts" / "_SUCCESS").write_text("")  # markers are not data
    for year, rows in ((2023, FRAME.iloc[:6]), (2024, FRAME.iloc[6:])):
        (tmp_path / "hive" / f"year={year}").mkdir(parents=True)
        rows.to_parquet(tmp_path / "hive" / f"year={year}" / "data.parquet")
    (tmp_path / "csv").mkdir()
    FRAME.iloc[:6].to_csv(tmp_path / "csv" / "a.csv", index=False)
    FRAME.iloc[6:].to_csv(tmp_path / "csv" / "b.csv", index=False)
    return tmp_path


def test_a_folder_of_parts_reads_as_one_table_in_path_order(folders):
    table = read_table(str(folders / "parts"))
    pd.testing.assert_frame_equal(table, FRAME)
    pd.testing.assert_frame_equal(read_table(f"file://{folders / 'parts'}"), FRAME)


def test_hive_partitions_become_columns_and_globs_select_parts(folders):
    table = read_table(str(folders / "hive"))
    assert table["year"].tolist() == [2023] * 6 + [2024] * 6
    pd.testing.assert_frame_equal(table.drop(columns="year"), FRAME)
    only_2024 = read_table(str(folders / "hive" / "year=2024" / "*.parquet"))
    assert len(only_2024) == 6 and "year" not in only_2024  # under the glob's fixed folder
    pd.testing.assert_frame_equal(read_table(str(folders / "csv" / "*.csv")), FRAME)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("missing", "data source not found: "),
        ("missing.parquet", "data file not found: "),
        ("parts/*.csv", "matches no file"),
        ("mixed", "every part must be .csv or .parquet, all of one kind"),
        ("drifted", "the parts' columns differ: "),
        ("empty", "is a folder with no data files in it"),
    ],
)
def test_each_problem_is_one_message_naming_it(folders, source, expected):
    (folders / "mixed").mkdir()
    FRAME.to_parquet(folders / "mixed" / "a.parquet")
    FRAME.to_csv(folders / "mixed" / "b.csv", index=False)
    (folders / "drifted").mkdir()
    FRAME.to_parquet(folders / "drifted" / "a.parquet")
    FRAME.assign(a=FRAME.a.astype(str)).to_parquet(folders / "drifted" / "b.parquet")
    (folders / "empty").mkdir()
    with pytest.raises(DataError) as caught:
        read_table(str(folders / source))
    assert expected in str(caught.value)
    if source == "drifted":
        assert "b.parquet has a (large_string)" in str(caught.value)  # the part that drifted
        assert "a.parquet has a (double)" in str(caught.value)


@pytest.fixture()
def s3(monkeypatch):
    """A bucket ``tables`` on a loopback S3 server, reached as pyarrow reaches S3 (its env)."""
    import boto3

    with loopback_s3("tables") as env:
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        yield boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name="us-east-1")


def test_a_partitioned_parquet_folder_on_s3_trains(s3, tmp_path):
    from sklearn.datasets import load_wine

    wine = load_wine(as_frame=True).frame
    for part, rows in enumerate(np.array_split(np.arange(len(wine)), 3)):
        local = tmp_path / f"part-{part}.parquet"
        wine.iloc[rows].to_parquet(local)
        s3.upload_file(str(local), "tables", f"wine/batch={part}/data.parquet")
    pd.testing.assert_frame_equal(
        read_table("s3://tables/wine").drop(columns="batch"), wine, check_dtype=False
    )
    trainer = plain_trainer(
        Recorder(tmp_path),
        data={"source": "s3://tables/wine", "label": "target", "drop": ["batch"]},
        optim={"epochs": 10, "lr": 0.01},
    )
    assert trainer.run().metrics["test_accuracy"] > 0.8


def test_a_missing_bucket_or_key_on_s3_is_one_message(s3):
    with pytest.raises(DataError, match="data source not found: s3://tables/nothing-here"):
        read_table("s3://tables/nothing-here")
    with pytest.raises(DataError, match="bucket no-such-bucket does not exist"):
        read_table("s3://no-such-bucket/x.parquet")
