"""IDX files (the MNIST format) and the MNIST / Fashion-MNIST loaders.

IDX layout (LeCun et al.): two zero bytes, a type byte (0x08 uint8, 0x09 int8, 0x0B int16,
0x0C int32, 0x0D float32, 0x0E float64), a byte giving the number of dimensions d, then d
big-endian uint32 sizes and the data, big-endian, row-major. MNIST images have magic 2051
(uint8, 3 dims), labels 2049 (uint8, 1 dim). Files may be gzip-compressed (detected from the
content, not the name). Reading is one ``np.frombuffer`` over the decompressed bytes.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from deniable.data.dataset import ArrayDataset, Split
from deniable.data.errors import DataError, MissingDataError
from deniable.data.files import find_file, require_dir

IDX_TYPES: dict[int, np.dtype[np.generic]] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

FASHION_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)

_GZIP_MAGIC = b"\x1f\x8b"


def read_idx(path: Path | str) -> NDArray[np.generic]:
    """The array stored in an IDX file (raw or gzip), in native byte order.

    Single-byte types come back as a read-only view of the file's bytes (no copy); copy before
    writing to them.

    Raises :class:`MissingDataError` if the file is absent and :class:`DataError` for a wrong magic
    number, an unknown type byte, or a size that disagrees with the header (truncated or padded).
    """
    path = Path(path)
    if not path.is_file():
        raise MissingDataError(f"IDX file {path} not found: check the path or --data-dir")
    return parse_idx(_read_bytes(path), source=str(path))


def parse_idx(data: bytes, *, source: str = "<bytes>") -> NDArray[np.generic]:
    """Decode the (uncompressed) bytes of an IDX file; see :func:`read_idx`."""
    if len(data) < 4:
        raise DataError(f"IDX file {source} is truncated: {len(data)} bytes, no 4-byte magic")
    if data[0] != 0 or data[1] != 0 or data[2] not in IDX_TYPES:
        magic = int.from_bytes(data[:4], "big")
        raise DataError(
            f"IDX file {source} has wrong magic number {magic} (0x{magic:08x}); expected "
            "0x0000TTDD with a known type TT (e.g. 2051 images, 2049 labels): not an IDX file?"
        )
    dtype = IDX_TYPES[data[2]]
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(
            f"IDX file {source} is truncated: header needs {header} bytes, file has {len(data)}"
        )
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    found = len(data) - header
    if found != expected:
        state = "truncated" if found < expected else "longer than its header says"
        raise DataError(
            f"IDX file {source} is {state}: shape {shape} needs {expected} data bytes, "
            f"found {found}"
        )
    arr = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    return arr.astype(dtype.newbyteorder("="), copy=False)


def load_mnist(data_dir: Path | str | None, *, fashion: bool = False) -> Split:
    """MNIST (or Fashion-MNIST) from the four standard IDX files, as a :class:`Split`.

    Looks for ``train-images-idx3-ubyte.gz``, ``train-labels-idx1-ubyte.gz``,
    ``t10k-images-idx3-ubyte.gz``, ``t10k-labels-idx1-ubyte.gz`` (or the same names without
    ``.gz``) in ``data_dir/mnist`` (``data_dir/fashion-mnist``) or ``data_dir`` itself. Pixels are
    scaled to [0, 1] float32 and shaped ``(n, 1, 28, 28)``; the split is the official
    60,000 / 10,000 one.
    """
    name = "fashion-mnist" if fashion else "mnist"
    root = require_dir(data_dir, name, "train-images-idx3-ubyte.gz")
    parts = []
    for prefix in ("train", "t10k"):
        images = _read_part(root, name, f"{prefix}-images-idx3-ubyte", ndim=3)
        labels = _read_part(root, name, f"{prefix}-labels-idx1-ubyte", ndim=1)
        if labels.shape[0] != images.shape[0]:
            raise DataError(
                f"{name} {prefix}: {images.shape[0]} images but {labels.shape[0]} labels; "
                "the image and label files do not belong together"
            )
        pixels = np.divide(images, np.float32(255.0), dtype=np.float32)[:, None, :, :]
        parts.append(
            ArrayDataset(
                features=pixels,
                labels=labels.astype(np.int64),
                num_classes=10,
                name=name,
                class_names=list(FASHION_CLASSES) if fashion else [str(d) for d in range(10)],
            )
        )
    return Split(train=parts[0], test=parts[1])


def _read_part(root: Path, name: str, stem: str, *, ndim: int) -> NDArray[np.generic]:
    path = find_file(root, name, (f"{stem}.gz", stem), name)
    arr = read_idx(path)
    if arr.dtype != np.uint8 or arr.ndim != ndim:
        raise DataError(
            f"IDX file {path} holds {arr.dtype} with {arr.ndim} dims; "
            f"{name} needs uint8 with {ndim} dims"
        )
    return arr


def _read_bytes(path: Path) -> bytes:
    raw = path.read_bytes()
    if not raw.startswith(_GZIP_MAGIC):
        return raw
    try:
        return gzip.decompress(raw)
    except (EOFError, OSError, zlib.error) as exc:
        raise DataError(
            f"gzip file {path} is damaged or truncated ({exc}); download it again"
        ) from exc
