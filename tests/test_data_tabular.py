"""Adult, German credit and generic CSV loading, with expectations computed from the raw files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from deniable.data import DataError, MissingDataError, load_adult, load_csv, load_german
from deniable.data.dataset import Split

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason="shared data folder absent")

ADULT_NUMERIC = [0, 2, 4, 10, 11, 12]  # positions of the numeric columns in the raw rows


def _raw_adult_rows(name: str) -> tuple[int, list[list[str]]]:
    """(all data rows, rows without '?') read directly from the raw file."""
    rows = []
    with open(DATA / "adult" / name) as handle:
        for line in handle:
            if line.strip() and not line.startswith("|"):
                rows.append([field.strip() for field in line.split(",")])
    return len(rows), [r for r in rows if "?" not in r]


@pytest.fixture(scope="module")
def adult() -> Split:
    return load_adult(DATA)


@needs_data
def test_adult_drops_rows_with_missing_values(adult: Split) -> None:
    for part, name, total in (
        (adult.train, "adult.data", 32561),
        (adult.test, "adult.test", 16281),
    ):
        count, kept = _raw_adult_rows(name)
        assert count == total
        assert len(part) == len(kept)
        assert any(f"dropped {total - len(kept)} of {total}" in note for note in part.notes)
        positives = sum(r[-1].rstrip(".") == ">50K" for r in kept)
        assert int(part.labels.sum()) == positives
    assert (len(adult.train), len(adult.test)) == (30162, 15060)


@needs_data
def test_adult_one_hot_width_comes_from_train_categories(adult: Split) -> None:
    _, kept = _raw_adult_rows("adult.data")
    categorical = [j for j in range(14) if j not in ADULT_NUMERIC]
    width = len(ADULT_NUMERIC) + sum(len({r[j] for r in kept}) for j in categorical)
    assert adult.train.feature_shape == adult.test.feature_shape == (width,)
    assert adult.train.feature_names == adult.test.feature_names
    names = adult.train.feature_names
    assert names is not None and "sex=Female" in names and "age" in names
    # a one-hot block sums to 1 on every training row
    sex = [i for i, n in enumerate(names) if n.startswith("sex=")]
    assert np.all(adult.train.features[:, sex].sum(axis=1) == 1)


@needs_data
def test_adult_numeric_columns_are_standardised_with_train_statistics(adult: Split) -> None:
    names = adult.train.feature_names
    assert names is not None
    age = names.index("age")
    assert abs(float(adult.train.features[:, age].mean())) < 1e-4
    assert abs(float(adult.train.features[:, age].std()) - 1) < 1e-4
    _, kept = _raw_adult_rows("adult.data")
    ages = np.array([float(r[0]) for r in kept])
    _, kept_test = _raw_adult_rows("adult.test")
    expected = (float(kept_test[0][0]) - ages.mean()) / ages.std()
    assert adult.test.features[0, age] == pytest.approx(expected, rel=1e-5)
    assert any("training split" in note for note in adult.train.notes)


@needs_data
def test_adult_keeps_sex_and_race_as_groups(adult: Split) -> None:
    assert adult.train.group_names["sex"] == ["Female", "Male"]
    assert len(adult.train.group_names["race"]) == 5
    _, kept = _raw_adult_rows("adult.data")
    women = sum(r[9] == "Female" for r in kept)
    assert int((adult.train.groups["sex"] == 0).sum()) == women
    assert adult.test.groups["race"].shape == (len(adult.test),)


@needs_data
def test_german_has_1000_rows_in_a_stratified_seeded_split() -> None:
    split = load_german(DATA)
    assert (len(split.train), len(split.test)) == (800, 200)
    assert int(split.train.labels.sum()) == 240 and int(split.test.labels.sum()) == 60
    assert split.train.class_names == ["good", "bad"]
    with open(DATA / "german" / "german.data") as handle:
        rows = [line.split() for line in handle if line.strip()]
    numeric = {1, 4, 7, 10, 12, 15, 17}
    width = len(numeric) + sum(len({r[j] for r in rows}) for j in range(20) if j not in numeric)
    # every category of this file appears in an 800-row training split of this seed
    assert split.feature_shape == (width,)
    assert set(split.train.groups) == {"sex", "age"}
    women = sum(r[8] in ("A92", "A95") for r in rows)
    assert int((split.train.groups["sex"] == 0).sum() + (split.test.groups["sex"] == 0).sum()) == (
        women
    )
    other = load_german(DATA / "german", seed=1)
    assert len(other.train) == 800
    assert not np.array_equal(other.train.features, split.train.features)


def _write_csv(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _people(tmp_path: Path) -> Path:
    lines = ["user,height,colour,sex,outcome"]
    for i in range(40):
        lines.append(
            f"u{i // 4},{150 + i},{['red', 'blue', 'green'][i % 3]},{'fm'[i % 2]},"
            f"{['no', 'yes'][i % 2]}"
        )
    return _write_csv(tmp_path / "people.csv", "\n".join(lines) + "\n")


def test_csv_round_trip_infers_types_and_keeps_groups_aside(tmp_path: Path) -> None:
    split = load_csv(_people(tmp_path), label_column="outcome", group_columns=["sex", "user"])
    assert split.name == "people" and (len(split.train), len(split.test)) == (32, 8)
    assert split.train.feature_names == ["height", "colour=blue", "colour=green", "colour=red"]
    assert split.train.class_names == ["no", "yes"]
    assert split.train.group_names["sex"] == ["f", "m"]
    assert int(split.test.labels.sum()) == 4
    # labels alternate with sex, so the group column must agree with the label everywhere
    assert np.array_equal(split.train.groups["sex"], split.train.labels)
    assert split.train.keys is None


def test_csv_explicit_categorical_and_numeric_labels(tmp_path: Path) -> None:
    path = _write_csv(
        tmp_path / "n.csv", "a,b,y\n" + "".join(f"{i},{i % 2},{i % 3}\n" for i in range(30))
    )
    split = load_csv(path, label_column="y", categorical=["b"], seed=3)
    assert split.train.feature_names == ["a", "b=0", "b=1"]
    assert split.num_classes == 3 and split.train.class_names == ["0", "1", "2"]


def test_csv_key_column_keeps_each_user_on_one_side(tmp_path: Path) -> None:
    split = load_csv(_people(tmp_path), label_column="outcome", key_column="user")
    assert split.train.keys is not None and split.test.keys is not None
    assert not set(split.train.keys.tolist()) & set(split.test.keys.tolist())
    assert len(split.test) == 8  # 2 of the 10 users, 4 rows each


@pytest.mark.parametrize(
    ("text", "kwargs", "words"),
    [
        ("", {}, ["is empty", "header"]),
        ("a,y\n", {}, ["no data rows"]),
        ("a,y\n1,0\n2,1\n", {"label_column": "z"}, ["no column 'z'", "a, y"]),
        ("a,y\n1,0\n2\n", {}, ["line 3", "1 fields, expected 2"]),
        ("a,y\n1,0\n,1\n", {}, ["line 3", "'a'", "empty"]),
        ("a,y\n1,0\nx,1\n", {"categorical": []}, ["line 3", "'x' is not a finite number"]),
        ("a,y\n1,0\nnan,1\n", {}, ["line 3", "'nan'"]),
        ("a,y\n1,0\n2,0\n", {}, ["fewer than 2"]),
        ("a,y\n1,0\n2,1\n", {"categorical": ["q"]}, ["'q'"]),
        ("a,a,y\n1,1,0\n", {}, ["repeated"]),
        ("y\n0\n1\n", {}, ["no feature columns"]),
    ],
)
def test_csv_errors_are_one_line(
    tmp_path: Path, text: str, kwargs: dict[str, object], words: list[str]
) -> None:
    path = _write_csv(tmp_path / "bad.csv", text)
    options: dict[str, object] = {"label_column": "y", **kwargs}
    with pytest.raises(DataError) as exc:
        load_csv(path, **options)  # type: ignore[arg-type]
    message = str(exc.value)
    assert "\n" not in message
    for word in words:
        assert word in message, (word, message)


def test_missing_tabular_files_name_the_file_and_flag(tmp_path: Path) -> None:
    with pytest.raises(MissingDataError, match="not found"):
        load_csv(tmp_path / "absent.csv", label_column="y")
    with pytest.raises(MissingDataError) as exc:
        load_adult(tmp_path)
    assert "adult.data" in str(exc.value) and "--data-dir" in str(exc.value)
    with pytest.raises(MissingDataError, match=r"german\.data"):
        load_german(tmp_path)


def test_adult_rows_with_the_wrong_field_count_name_the_line(tmp_path: Path) -> None:
    folder = tmp_path / "adult"
    folder.mkdir()
    (folder / "adult.data").write_text("39, State-gov, 77516\n")
    (folder / "adult.test").write_text("|1x3 Cross validator\n")
    with pytest.raises(DataError, match="line 1 has 3 fields, expected 15"):
        load_adult(tmp_path)
