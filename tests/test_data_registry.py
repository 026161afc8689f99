"""The embedded digits dataset and load_dataset's names, paths and errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_digits as sklearn_digits

from deniable.data import DATASETS, DataError, MissingDataError, load_dataset, load_digits
from deniable.errors import DeniableError

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def test_names() -> None:
    assert DATASETS == ("digits", "mnist", "fashion-mnist", "adult", "german")


def test_digits_split_sizes_and_stratification() -> None:
    split = load_dataset("digits")
    assert (len(split.train), len(split.test)) == (1438, 359)
    assert split.feature_shape == (1, 8, 8) and split.num_classes == 10
    bunch = sklearn_digits()
    counts = np.bincount(bunch.target)
    test_counts = np.bincount(split.test.labels, minlength=10)
    assert np.all(np.abs(test_counts - 0.2 * counts) < 1)
    assert np.array_equal(np.bincount(split.train.labels) + test_counts, counts)
    pixels = np.concatenate([split.train.features, split.test.features]).reshape(1797, 64)
    expected = (bunch.data / 16).astype(np.float32)
    assert np.array_equal(np.unique(pixels, axis=0), np.unique(expected, axis=0))
    assert pixels.min() == 0 and pixels.max() == 1


def test_digits_split_depends_only_on_the_seed() -> None:
    a, b, c = load_digits(seed=0), load_dataset("digits", seed=0), load_digits(seed=1)
    assert np.array_equal(a.train.features, b.train.features)
    assert not np.array_equal(a.train.features, c.train.features)
    assert len(c.test) == 359


def test_paths_to_npz_files_and_image_folders(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", x=np.ones((20, 3)), y=np.arange(20) % 2)
    assert len(load_dataset(str(tmp_path / "d.npz")).train) == 16
    assert len(load_dataset("d.npz", tmp_path).test) == 4
    from PIL import Image

    for cls in ("a", "b"):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        for i in range(3):
            Image.new("L", (4, 4), i).save(tmp_path / "imgs" / cls / f"{i}.png")
    assert load_dataset("imgs", tmp_path).feature_shape == (1, 4, 4)


@pytest.mark.parametrize(
    ("name", "data_dir", "error", "words"),
    [
        ("mnist", None, MissingDataError, ["--data-dir"]),
        ("adult", "absent", MissingDataError, ["does not exist", "--data-dir"]),
        ("fashion-mnist", ".", MissingDataError, ["train-images-idx3-ubyte.gz", "--data-dir"]),
        ("german", ".", MissingDataError, ["german.data", "--data-dir"]),
        ("cifar", None, DataError, ["unknown dataset 'cifar'", "digits, mnist"]),
        ("table.csv", ".", DataError, ["label column", "load_csv"]),
    ],
)
def test_errors_are_one_line_and_say_what_to_do(
    tmp_path: Path, name: str, data_dir: str | None, error: type[DeniableError], words: list[str]
) -> None:
    (tmp_path / "table.csv").write_text("a,y\n1,0\n")
    folder = None if data_dir is None else tmp_path / data_dir
    with pytest.raises(error) as exc:
        load_dataset(name, folder)
    text = str(exc.value)
    assert "\n" not in text
    for word in words:
        assert word in text, (word, text)


@pytest.mark.skipif(not DATA.is_dir(), reason="shared data folder absent")
def test_named_datasets_load_from_the_shared_data_root() -> None:
    split = load_dataset("german", DATA, seed=2)
    assert len(split.train) + len(split.test) == 1000
