"""Feature types and preprocessing: inference, every missing-value rule, unseen categories, the
refusals, and that the fitted transformation is plain JSON fitted on the training rows only."""

import json

import numpy as np
import pandas as pd
import pytest

from trainers.config import DataConfig, FeatureConfig
from trainers.data.preprocessing import Preprocessing, fit, infer_type
from trainers.data.tables import encode, load_table, prepare_table
from trainers.data.tabular_input import TabularInput
from trainers.errors import DataError, InputError
from trainers.loop.plan import balanced_weights


def table() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "size": [1.0, 2.0, np.nan, 4.0, 10.0, 6.0],
            "color": ["red", "blue", "red", None, "green", "red"],
            "flag": [True, False, True, True, False, False],
            "count": [1, 2, 3, 4, 5, 6],
            "y": ["a", "b", "a", "b", "a", "b"],
        }
    )


def fitted(frame: pd.DataFrame, rules=None, max_one_hot: int = 10) -> Preprocessing:
    gaps = {name: bool(frame[name].isna().any()) for name in frame}
    return fit(frame, rules or {}, max_one_hot, gaps)


def test_types_are_inferred_from_the_values():
    frame = table()
    assert infer_type(frame["size"], None) == "number"
    assert infer_type(frame["count"], None) == "number"  # an integer is a quantity unless set
    assert infer_type(frame["color"], None) == "category"
    assert infer_type(frame["flag"], None) == "boolean"
    assert infer_type(pd.Series([True, None, False], dtype=object), None) == "boolean"
    assert infer_type(frame["count"], "category") == "category"


@pytest.mark.parametrize(
    "rule, expected",
    [
        ({}, np.mean([1.0, 2.0, 4.0, 10.0, 6.0])),  # gaps and no rule: the mean
        ({"size": FeatureConfig(missing="mean")}, np.mean([1.0, 2.0, 4.0, 10.0, 6.0])),
        ({"size": FeatureConfig(missing="median")}, 4.0),
        ({"size": FeatureConfig(missing="constant", fill_value=-1.0)}, -1.0),
    ],
    ids=["default", "mean", "median", "constant"],
)
def test_a_missing_number_is_filled_by_its_rule(rule, expected):
    fitted_table = fitted(table().drop(columns="y"), rule)
    encoded = fitted_table.transform(table())
    size = fitted_table.dense_names.index("size")
    assert encoded[2, size] == pytest.approx(expected)
    assert encoded[0, size] == 1.0


def test_the_drop_rule_leaves_the_rows_out_and_refuses_a_gap_at_prediction(tmp_path):
    path = tmp_path / "t.csv"
    table().to_csv(path, index=False)
    cfg = DataConfig(source=str(path), label="y", features={"size": FeatureConfig(missing="drop")})
    prepared = prepare_table(pd.read_csv(path), cfg)
    assert len(prepared.labels) == 5 and prepared.dropped_rows == 1
    dataset = encode(prepared, np.arange(5))
    assert dataset.preprocessing is not None
    with pytest.raises(InputError, match="column 'size': 1 missing value"):
        dataset.preprocessing.transform(table())


def test_a_number_column_without_gaps_refuses_a_missing_value():
    frame = table().drop(columns="y").assign(size=[1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    fitted_table = fitted(frame)
    with pytest.raises(InputError, match="column 'size': 1 missing value.*trained without gaps"):
        fitted_table.transform(frame.assign(size=[np.nan, 2.0, 3.0, 4.0, 5.0, 6.0]))


def test_categories_are_one_hot_with_a_missing_slot_and_unseen_ones_unknown():
    fitted_table = fitted(table().drop(columns="y"))
    color = next(c for c in fitted_table.columns if c.name == "color")
    assert color.categories == ["red", "blue", "green"] and color.had_missing  # by frequency
    names = fitted_table.dense_names
    assert [n for n in names if n.startswith("color")] == [
        "color=red",
        "color=blue",
        "color=green",
        "color=<missing>",
    ]
    rows = pd.DataFrame(
        {"size": [1.0] * 3, "color": ["blue", None, "purple"], "flag": [True] * 3, "count": [1] * 3}
    )
    encoded = fitted_table.transform(rows)
    block = encoded[:, [names.index(n) for n in names if n.startswith("color")]]
    assert block.tolist() == [[0, 1, 0, 0], [0, 0, 0, 1], [0, 0, 0, 0]]  # unseen: no column set


def test_many_categories_get_an_embedding_with_unknown_and_missing_codes():
    frame = pd.DataFrame({"city": [f"c{i % 12}" for i in range(48)], "x": np.arange(48.0)})
    fitted_table = fitted(frame, max_one_hot=10)
    (city,) = fitted_table.embedded
    assert city.cardinality == 14 and city.embedding_dim >= 2
    assert fitted_table.dense_names == ["x"] and fitted_table.width == 2
    codes = fitted_table.transform(pd.DataFrame({"city": ["c0", None, "nowhere"], "x": [0.0] * 3}))
    assert codes[:, 1].tolist() == [2 + city.categories.index("c0"), 1, 0]


def test_booleans_take_true_false_and_their_text_and_refuse_anything_else():
    fitted_table = fitted(table().drop(columns="y"))
    flag = fitted_table.dense_names.index("flag")
    rows = table().assign(flag=[True, "false", 1, "yes", 0, False])
    assert fitted_table.transform(rows)[:, flag].tolist() == [1, 0, 1, 1, 0, 0]
    with pytest.raises(InputError, match="column 'flag': expected a boolean, got 'maybe'"):
        fitted_table.transform(table().assign(flag=["maybe"] * 6))


@pytest.mark.parametrize(
    "change, message",
    [
        ({"size": ["big"] * 6}, "column 'size': expected a number, got 'big'"),
        ({"size": [np.inf] * 6}, "column 'size': infinite"),
        ({"color": [[1]] * 6}, "a category value must be a string or a number"),
    ],
    ids=["text-in-number", "infinite", "list-as-category"],
)
def test_a_wrong_value_is_refused_naming_the_column(change, message):
    fitted_table = fitted(table().drop(columns="y"))
    with pytest.raises(InputError, match=message):
        fitted_table.transform(table().assign(**change))


def test_a_missing_column_is_refused_by_name():
    fitted_table = fitted(table().drop(columns="y"))
    with pytest.raises(InputError, match=r"missing feature column\(s\) \['color'\]"):
        fitted_table.transform(table().drop(columns="color"))


def test_rows_of_numbers_are_refused_for_a_model_with_categories():
    schema = TabularInput(fitted(table().drop(columns="y")))
    with pytest.raises(InputError, match="category or boolean columns: give a DataFrame"):
        schema.rows([[1.0, 2.0, 3.0, 4.0]])
    record = {"size": None, "color": "teal", "flag": False, "count": 3}
    assert schema.rows(record).shape == (1, fitted(table().drop(columns="y")).width)


def test_the_preprocessing_is_fitted_on_the_given_rows_only_and_is_plain_json(tmp_path):
    frame = table()
    prepared = prepare_table(frame, DataConfig(source="t.csv", label="y"))
    dataset = encode(prepared, np.array([0, 1, 2, 3]))  # not the 10.0 of row 4, nor green
    assert dataset.preprocessing is not None
    size = next(c for c in dataset.preprocessing.columns if c.name == "size")
    assert size.fill == pytest.approx(np.mean([1.0, 2.0, 4.0]))
    color = next(c for c in dataset.preprocessing.columns if c.name == "color")
    assert "green" not in color.categories
    text = json.dumps(dataset.preprocessing.to_dict())
    again = Preprocessing.from_dict(json.loads(text))
    assert np.array_equal(again.transform(frame), dataset.features)


def test_labels_missing_are_left_out_and_counted():
    frame = table().assign(y=["a", None, "a", "b", None, "b"])
    prepared = prepare_table(frame, DataConfig(source="t.csv", label="y"))
    assert prepared.dropped_labels == 2 and len(prepared.labels) == 4
    assert prepared.classes == ["a", "b"]


@pytest.mark.parametrize(
    "cfg, message",
    [
        ({"drop": ["nope"]}, "data.drop names column.*'nope' not found"),
        ({"features": {"y": FeatureConfig(type="number")}}, "is the label or dropped"),
        (
            {"features": {"color": FeatureConfig(type="number")}},
            "column 'color' .* declared a number",
        ),
    ],
)
def test_bad_feature_settings_are_data_errors(cfg, message):
    with pytest.raises(DataError, match=message):
        prepare_table(table(), DataConfig(source="t.csv", label="y", **cfg))


def test_the_bundled_penguins_have_strings_and_gaps():
    prepared = load_table(DataConfig(source="penguins"))
    assert prepared.classes == ["Adelie", "Chinstrap", "Gentoo"] and len(prepared.labels) == 344
    assert prepared.has_gaps["sex"] and prepared.has_gaps["body_mass_g"]
    dataset = encode(prepared, np.arange(200))
    assert dataset.preprocessing is not None
    kinds = {c.name: c.type for c in dataset.preprocessing.columns}
    assert kinds["island"] == "category" and kinds["bill_length_mm"] == "number"
    assert np.isfinite(dataset.features).all()


def test_balanced_class_weights_are_n_over_classes_times_count():
    weights = balanced_weights(np.array([0, 0, 0, 1]), 3)
    assert weights == pytest.approx((4 / 9, 4 / 3, 1.0))


def test_a_frame_of_arrow_types_is_read_like_numpy_types():
    """Ray Data hands batches of Arrow types, whose gaps are pandas' NA."""
    import pyarrow as pa

    frame = table().drop(columns="y")
    arrow = pa.Table.from_pandas(frame).to_pandas(types_mapper=pd.ArrowDtype)
    assert arrow["color"].isna().sum() == 1 and str(arrow["size"].dtype) == "double[pyarrow]"
    fitted_table = fitted(frame)
    assert np.array_equal(fitted_table.transform(arrow), fitted_table.transform(frame))
