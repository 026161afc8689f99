"""The IDX reader on hand-made files (raw and gzip) and on the real MNIST / Fashion-MNIST."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from deniable.data import DataError, MissingDataError, load_mnist, parse_idx, read_idx
from deniable.data.dataset import Split

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason="shared data folder absent")

# label counts of digits 0-9 from MANIFEST.md
TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
TYPE_CODES = {"u1": 0x08, "i1": 0x09, ">i2": 0x0B, ">i4": 0x0C, ">f4": 0x0D, ">f8": 0x0E}


def _idx_bytes(arr: np.ndarray, dtype: str) -> bytes:
    """An IDX file written from the format description, independently of the reader."""
    header = bytes([0, 0, TYPE_CODES[dtype], arr.ndim])
    header += b"".join(struct.pack(">I", d) for d in arr.shape)
    return header + arr.astype(dtype).tobytes()


def _write(path: Path, data: bytes, *, compress: bool) -> Path:
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("dtype", list(TYPE_CODES))
def test_round_trips_every_type_raw_and_gzip(tmp_path: Path, dtype: str, compress: bool) -> None:
    arr = (np.arange(24).reshape(2, 3, 4) - 5).astype(np.float64) * (1.5 if "f" in dtype else 1)
    if dtype == "u1":
        arr = np.abs(arr)
    path = _write(tmp_path / "x.idx", _idx_bytes(arr, dtype), compress=compress)
    out = read_idx(path)
    assert out.shape == (2, 3, 4)
    assert out.dtype == np.dtype(dtype).newbyteorder("=")
    assert np.array_equal(out, arr)


def test_byte_order_is_big_endian() -> None:
    data = bytes([0, 0, 0x0B, 1, 0, 0, 0, 2, 0x01, 0x02, 0xFF, 0xFE])
    assert parse_idx(data).tolist() == [0x0102, -2]


def _error(data: bytes, *words: str) -> None:
    with pytest.raises(DataError) as exc:
        parse_idx(data, source="f.idx")
    text = str(exc.value)
    assert "\n" not in text and "f.idx" in text
    for word in words:
        assert word in text, (word, text)


def test_bad_files_raise_one_line_errors() -> None:
    good = _idx_bytes(np.zeros((3, 2, 2)), "u1")
    _error(good[:-1], "truncated", "12 data bytes", "found 11")
    _error(good[:10], "truncated", "header needs 16 bytes")
    _error(good[:3], "truncated", "no 4-byte magic")
    _error(good + b"\x00", "longer than its header says")
    _error(b"\x1f\x8b\x08\x00" + good[4:], "wrong magic number")
    _error(bytes([0, 0, 0x07, 1, 0, 0, 0, 0]), "wrong magic number", "0x00000701")
    _error(bytes([1, 0, 0x08, 1, 0, 0, 0, 0]), "wrong magic number")


def test_damaged_gzip_and_missing_file(tmp_path: Path) -> None:
    packed = gzip.compress(_idx_bytes(np.arange(1000) % 256, "u1"))
    path = tmp_path / "cut.gz"
    path.write_bytes(packed[: len(packed) // 2])
    with pytest.raises(DataError, match="damaged or truncated") as exc:
        read_idx(path)
    assert "\n" not in str(exc.value)
    with pytest.raises(MissingDataError, match="not found"):
        read_idx(tmp_path / "nope.idx")


def _tiny_mnist(folder: Path, *, n_train: int = 5, n_test: int = 3, compress: bool = True) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    suffix = ".gz" if compress else ""
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28))
        _write(
            folder / f"{prefix}-images-idx3-ubyte{suffix}",
            _idx_bytes(images, "u1"),
            compress=compress,
        )
        _write(
            folder / f"{prefix}-labels-idx1-ubyte{suffix}",
            _idx_bytes(np.arange(n) % 10, "u1"),
            compress=compress,
        )


@pytest.mark.parametrize("compress", [True, False])
def test_load_mnist_accepts_the_data_root_or_the_dataset_folder(
    tmp_path: Path, compress: bool
) -> None:
    _tiny_mnist(tmp_path / "mnist", compress=compress)
    for where in (tmp_path, tmp_path / "mnist"):
        split = load_mnist(where)
        assert split.train.features.shape == (5, 1, 28, 28)
        assert split.test.labels.tolist() == [0, 1, 2]
        assert split.train.features.min() >= 0 and split.train.features.max() <= 1


def test_load_mnist_errors(tmp_path: Path) -> None:
    with pytest.raises(MissingDataError, match="--data-dir"):
        load_mnist(None)
    with pytest.raises(MissingDataError, match="does not exist"):
        load_mnist(tmp_path / "absent")
    with pytest.raises(MissingDataError) as exc:
        load_mnist(tmp_path)
    assert "train-images-idx3-ubyte.gz" in str(exc.value) and "--data-dir" in str(exc.value)
    _tiny_mnist(tmp_path / "fashion-mnist")
    labels = tmp_path / "fashion-mnist" / "t10k-labels-idx1-ubyte.gz"
    _write(labels, _idx_bytes(np.arange(4), "u1"), compress=True)
    with pytest.raises(DataError, match="3 images but 4 labels"):
        load_mnist(tmp_path, fashion=True)
    _write(labels, _idx_bytes(np.zeros((3, 2)), "u1"), compress=True)
    with pytest.raises(DataError, match="needs uint8 with 1 dims"):
        load_mnist(tmp_path, fashion=True)


@pytest.fixture(scope="module")
def mnist() -> Split:
    return load_mnist(DATA)


@needs_data
def test_real_mnist_shapes_and_label_counts_match_the_manifest(mnist: Split) -> None:
    assert mnist.train.features.shape == (60000, 1, 28, 28)
    assert mnist.test.features.shape == (10000, 1, 28, 28)
    assert mnist.train.features.dtype == np.float32
    assert np.bincount(mnist.train.labels).tolist() == TRAIN_COUNTS
    assert np.bincount(mnist.test.labels).tolist() == TEST_COUNTS


@needs_data
def test_real_mnist_pixels_equal_the_raw_bytes_over_255(mnist: Split) -> None:
    with gzip.open(DATA / "mnist" / "train-images-idx3-ubyte.gz") as handle:
        raw = handle.read()
    assert struct.unpack(">IIII", raw[:16]) == (2051, 60000, 28, 28)
    for index in (0, 1, 59999):
        start = 16 + index * 784
        expected = np.frombuffer(raw[start : start + 784], dtype=np.uint8).reshape(28, 28)
        assert np.array_equal(np.rint(mnist.train.features[index, 0] * 255), expected)
    with gzip.open(DATA / "mnist" / "t10k-labels-idx1-ubyte.gz") as handle:
        labels = handle.read()
    assert struct.unpack(">II", labels[:8]) == (2049, 10000)
    assert mnist.test.labels[:5].tolist() == list(labels[8:13])
    assert mnist.train.labels[0] == 5 and mnist.test.labels[0] == 7
    assert mnist.train.features.min() == 0 and mnist.train.features.max() == 1


@needs_data
def test_real_fashion_mnist_is_balanced() -> None:
    split = load_mnist(DATA / "fashion-mnist", fashion=True)
    assert split.train.features.shape == (60000, 1, 28, 28)
    assert split.test.features.shape == (10000, 1, 28, 28)
    assert np.bincount(split.train.labels).tolist() == [6000] * 10
    assert np.bincount(split.test.labels).tolist() == [1000] * 10
    assert split.train.class_names is not None and split.train.class_names[9] == "Ankle boot"
