"""ArrayDataset / Split validation and the seeded splitters."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deniable.data import ArrayDataset, DataError, Split, stratified_split, unit_split
from deniable.errors import DeniableError


def _dataset(**overrides: object) -> ArrayDataset:
    n = 6
    fields: dict[str, object] = {
        "features": np.arange(n * 4, dtype=np.float64).reshape(n, 2, 2),
        "labels": np.arange(n) % 3,
        "num_classes": 3,
        "name": "toy",
        "keys": np.arange(n) // 2,
        "groups": {"sex": np.arange(n) % 2},
        "group_names": {"sex": ["f", "m"]},
    }
    fields.update(overrides)
    return ArrayDataset(**fields)  # type: ignore[arg-type]


def _one_line_error(exc: pytest.ExceptionInfo[DeniableError], *words: str) -> None:
    text = str(exc.value)
    assert "\n" not in text
    for word in words:
        assert word in text, (word, text)


def test_converts_dtypes_and_describes_shape() -> None:
    data = _dataset()
    assert data.features.dtype == np.float32 and data.labels.dtype == np.int64
    assert data.keys is not None and data.keys.dtype == np.int64
    assert len(data) == 6 and data.feature_shape == (2, 2)
    assert data.groups["sex"].dtype == np.int64


def test_unit_keys_default_to_one_unit_per_example() -> None:
    assert np.array_equal(_dataset(keys=None).unit_keys(), np.arange(6))
    assert np.array_equal(_dataset().unit_keys(), [0, 0, 1, 1, 2, 2])


def test_subset_keeps_metadata_and_aligns_all_columns() -> None:
    data = _dataset(class_names=["a", "b", "c"], notes=("note",))
    part = data.subset([4, 1])
    assert len(part) == 2
    assert np.array_equal(part.labels, [1, 1])
    assert part.keys is not None and np.array_equal(part.keys, [2, 0])
    assert np.array_equal(part.groups["sex"], [0, 1])
    assert np.array_equal(part.features[0], data.features[4])
    assert part.class_names == ["a", "b", "c"] and part.notes == ("note",)
    masked = data.subset(data.labels == 0)
    assert np.array_equal(masked.labels, [0, 0])


def test_to_tensors_shares_memory_with_the_arrays() -> None:
    data = _dataset()
    x, y = data.to_tensors()
    assert x.dtype == torch.float32 and y.dtype == torch.int64
    assert x.shape == (6, 2, 2) and y.shape == (6,)
    assert x.data_ptr() == data.features.__array_interface__["data"][0]


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        ({"labels": np.arange(5)}, ["labels", "(6,)"]),
        (
            {
                "features": np.zeros((0, 3)),
                "labels": np.zeros(0),
                "keys": None,
                "groups": {},
                "group_names": {},
            },
            ["n >= 1"],
        ),
        ({"features": np.zeros(6)}, ["feature_shape"]),
        ({"labels": np.array([0, 1, 2, 3, 0, 1])}, ["label 3", "row 3", "[0, 3)"]),
        ({"labels": np.array([0, 1, -1, 0, 0, 1])}, ["label -1", "row 2"]),
        ({"labels": np.array([0, 1, 0.5, 0, 0, 1])}, ["integers", "row 2"]),
        ({"labels": np.array(["a"] * 6)}, ["integers"]),
        ({"num_classes": 1, "labels": np.zeros(6)}, ["num_classes", ">= 2"]),
        ({"groups": {"sex": np.array([0, 1, 2, 0, 0, 0])}}, ["group 'sex'", "row 2"]),
        ({"group_names": {"race": ["x"]}}, ["'race'"]),
        ({"feature_names": ["a", "b"]}, ["2 feature_names", "4 features"]),
        ({"class_names": ["a"]}, ["1 class_names"]),
        ({"keys": np.arange(7)}, ["keys"]),
    ],
)
def test_invalid_inputs_raise_one_line_errors(
    overrides: dict[str, object], words: list[str]
) -> None:
    with pytest.raises(DataError) as exc:
        _dataset(**overrides)
    _one_line_error(exc, "toy", *words)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_features_name_the_dataset_and_first_bad_row(bad: float) -> None:
    features = np.ones((6, 2, 2))
    features[4, 1, 0] = bad
    features[5, 0, 0] = bad
    with pytest.raises(DataError) as exc:
        _dataset(features=features)
    _one_line_error(exc, "'toy'", "row 4", "feature 2")


def test_split_requires_matching_shapes_and_classes() -> None:
    data = _dataset()
    split = Split(train=data, test=data.subset([0]))
    assert split.name == "toy" and split.feature_shape == (2, 2) and split.num_classes == 3
    other = _dataset(features=np.zeros((6, 4)))
    with pytest.raises(DataError) as exc:
        Split(train=data, test=other)
    _one_line_error(exc, "shape")
    with pytest.raises(DataError) as exc:
        Split(train=data, test=_dataset(num_classes=4))
    _one_line_error(exc, "classes")


def test_stratified_split_is_exact_proportional_and_seeded() -> None:
    labels = np.repeat(np.arange(3), [50, 30, 20]).astype(np.int64)
    train, test = stratified_split(labels, 0.25, seed=1)
    assert len(test) == 25 and len(train) == 75
    assert np.array_equal(np.sort(np.concatenate([train, test])), np.arange(100))
    # shares 12.5, 7.5, 5: floors 12, 7, 5 and the one left over goes to the first tied class
    assert np.bincount(labels[test]).tolist() == [13, 7, 5]
    again, _ = stratified_split(labels, 0.25, seed=1)
    other, _ = stratified_split(labels, 0.25, seed=2)
    assert np.array_equal(train, again) and not np.array_equal(train, other)


def test_unit_split_keeps_each_unit_on_one_side() -> None:
    keys = np.repeat(np.arange(20), 3).astype(np.int64)
    train, test = unit_split(keys, 0.2, seed=0)
    assert len(np.unique(keys[test])) == 4
    assert not set(keys[train]) & set(keys[test])
    assert len(train) + len(test) == 60


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 0.001])
def test_split_rejects_fractions_that_leave_a_side_empty(fraction: float) -> None:
    with pytest.raises(DataError) as exc:
        stratified_split(np.zeros(10, dtype=np.int64), fraction, seed=0)
    _one_line_error(exc, "test_fraction")
