"""NPZ archives and image folders: round trips in tmp_path and one-line errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from deniable.data import DataError, MissingDataError, load_image_folder, load_npz


def _message(exc: pytest.ExceptionInfo[DataError], *words: str) -> None:
    text = str(exc.value)
    assert "\n" not in text
    for word in words:
        assert word in text, (word, text)


def test_npz_with_x_and_y_is_split_by_label(tmp_path: Path) -> None:
    x = np.arange(50 * 3, dtype=np.float64).reshape(50, 3)
    y = np.arange(50) % 2
    np.savez(tmp_path / "toy.npz", x=x, y=y)
    split = load_npz(tmp_path / "toy.npz", test_fraction=0.2, seed=4)
    assert split.name == "toy" and (len(split.train), len(split.test)) == (40, 10)
    assert split.train.features.dtype == np.float32 and split.num_classes == 2
    assert int(split.test.labels.sum()) == 5
    rows = np.concatenate([split.train.features, split.test.features])
    assert np.array_equal(np.sort(rows[:, 0]), x[:, 0].astype(np.float32))


def test_npz_with_a_given_split_and_keys(tmp_path: Path) -> None:
    np.savez(
        tmp_path / "given.npz",
        x_train=np.zeros((4, 1, 2, 2), dtype=np.uint8),
        y_train=np.array([0, 1, 2, 0]),
        x_test=np.ones((2, 1, 2, 2)),
        y_test=np.array([1.0, 2.0]),
        keys_train=np.array([7, 7, 8, 9]),
        num_classes=np.array(5),
    )
    split = load_npz(tmp_path / "given.npz")
    assert split.feature_shape == (1, 2, 2) and split.num_classes == 5
    assert split.train.keys is not None and split.train.keys.tolist() == [7, 7, 8, 9]
    assert split.test.keys is None and split.test.labels.tolist() == [1, 2]


def test_npz_keys_keep_units_together(tmp_path: Path) -> None:
    keys = np.repeat(np.arange(10), 5)
    np.savez(tmp_path / "u.npz", x=np.ones((50, 2)), y=np.arange(50) % 3, keys=keys)
    split = load_npz(tmp_path / "u.npz")
    assert split.train.keys is not None and split.test.keys is not None
    assert not set(split.train.keys.tolist()) & set(split.test.keys.tolist())
    assert len(split.test) == 10


def test_npz_errors(tmp_path: Path) -> None:
    x = np.ones((10, 2))
    x[7, 1] = np.nan
    np.savez(
        tmp_path / "nan.npz",
        x_train=x,
        y_train=np.arange(10) % 2,
        x_test=np.ones((2, 2)),
        y_test=np.array([0, 1]),
    )
    with pytest.raises(DataError) as exc:
        load_npz(tmp_path / "nan.npz")
    _message(exc, "'nan'", "row 7", "nan")

    np.savez(
        tmp_path / "range.npz", x=np.ones((10, 2)), y=np.arange(10) % 4, num_classes=np.array(3)
    )
    with pytest.raises(DataError) as exc:
        load_npz(tmp_path / "range.npz")
    _message(exc, "label 3", "[0, 3)")

    np.savez(tmp_path / "neg.npz", x=np.ones((10, 2)), y=np.arange(10) - 1)
    with pytest.raises(DataError) as exc:
        load_npz(tmp_path / "neg.npz")
    _message(exc, "negative label -1")

    np.savez(tmp_path / "names.npz", features=np.ones((3, 2)), y=np.zeros(3))
    with pytest.raises(DataError) as exc:
        load_npz(tmp_path / "names.npz")
    _message(exc, "needs arrays x and y", "found: features, y")

    np.savez(tmp_path / "obj.npz", x=np.array([{"a": 1}] * 4, dtype=object), y=np.zeros(4))
    with pytest.raises(DataError) as exc:
        load_npz(tmp_path / "obj.npz")
    _message(exc, "pickled")

    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError) as exc:
        load_npz(tmp_path / "junk.npz")
    _message(exc, "not a readable .npz")

    with pytest.raises(MissingDataError) as missing:
        load_npz(tmp_path / "absent.npz")
    _message(missing, "absent.npz", "not found")


def _png(path: Path, value: int, size: tuple[int, int] = (6, 5), mode: str = "L") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    colour: int | tuple[int, int, int] = value if mode == "L" else (value, 0, 255 - value)
    Image.new(mode, size, colour).save(path)


def _classes(root: Path, per_class: int = 5) -> None:
    for label, cls in enumerate(("cat", "dog")):
        for i in range(per_class):
            _png(root / cls / f"{i}.png", 10 * label + i)


def test_image_folder_round_trip_with_seeded_split(tmp_path: Path) -> None:
    _classes(tmp_path / "pets")
    split = load_image_folder(tmp_path / "pets", seed=0)
    assert split.name == "pets" and split.train.class_names == ["cat", "dog"]
    assert (len(split.train), len(split.test)) == (8, 2)
    assert split.feature_shape == (1, 5, 6)  # (channels, height, width) of a 6 wide, 5 high PNG
    assert np.bincount(split.test.labels).tolist() == [1, 1]
    values = np.rint(split.train.features[:, 0, 0, 0] * 255).astype(int)
    expected = {10 * label + i for label in (0, 1) for i in range(5)}
    assert set(values.tolist()) <= expected
    for label, value in zip(split.train.labels, values, strict=True):
        assert value // 10 == label


def test_image_folder_with_train_and_test_resized_rgb(tmp_path: Path) -> None:
    _classes(tmp_path / "train", per_class=2)
    _classes(tmp_path / "test", per_class=1)
    _png(tmp_path / "test" / "dog" / "big.jpg", 200, size=(12, 12), mode="RGB")
    split = load_image_folder(tmp_path, size=4, grayscale=False)
    assert split.train.features.shape == (4, 3, 4, 4)
    assert split.test.features.shape == (3, 3, 4, 4)
    assert split.test.labels.tolist() == [0, 1, 1]


def test_image_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(MissingDataError):
        load_image_folder(tmp_path / "absent")
    _png(tmp_path / "one" / "a" / "0.png", 1)
    with pytest.raises(DataError) as exc:
        load_image_folder(tmp_path / "one")
    _message(exc, "at least 2")
    _classes(tmp_path / "mixed")
    _png(tmp_path / "mixed" / "dog" / "wide.png", 1, size=(9, 5))
    with pytest.raises(DataError) as exc:
        load_image_folder(tmp_path / "mixed")
    _message(exc, "differ in size", "size=(height, width)")
    assert len(load_image_folder(tmp_path / "mixed", size=(5, 6)).train) == 9
    _classes(tmp_path / "broken")
    (tmp_path / "broken" / "cat" / "bad.png").write_bytes(b"\x89PNG garbage")
    with pytest.raises(DataError) as exc:
        load_image_folder(tmp_path / "broken")
    _message(exc, "cannot read image", "bad.png")
    with pytest.raises(DataError) as exc:
        load_image_folder(tmp_path / "broken", size=0)
    _message(exc, "size must be")
