"""Image datasets stored as one sub-folder per class (PNG, JPEG, BMP, GIF; read with Pillow).

``root/<class>/<image>``, split here with a seed, or ``root/train/<class>/...`` and
``root/test/<class>/...`` when both exist. Classes are the sorted folder names of the training
part. Pixels are scaled to [0, 1] float32, shaped ``(n, channels, height, width)`` with 1 channel
(greyscale) or 3 (RGB). Without ``size`` every image must have the same size.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from PIL import Image, UnidentifiedImageError

from deniable.data.dataset import ArrayDataset, Split
from deniable.data.errors import DataError, MissingDataError
from deniable.data.splitting import stratified_split

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")


def load_image_folder(
    root: Path | str,
    *,
    size: int | tuple[int, int] | None = None,
    grayscale: bool = True,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> Split:
    """The images under ``root`` as a :class:`Split` (see the module docstring for the layout).

    ``size``: resize every image to ``size×size`` or ``(height, width)`` (bilinear); ``None``
    keeps sizes and requires them to agree. ``grayscale``: 1 channel, else 3 (RGB).
    """
    root = Path(root)
    if not root.is_dir():
        raise MissingDataError(f"image folder {root} not found: check the path or --data-dir")
    target = _target_size(size)
    if (root / "train").is_dir() and (root / "test").is_dir():
        classes = _class_folders(root / "train")
        train = _load_part(root / "train", classes, target, grayscale, root.name)
        test = _load_part(root / "test", classes, target, grayscale, root.name)
        return Split(train=train, test=test)
    full = _load_part(root, _class_folders(root), target, grayscale, root.name)
    train_idx, test_idx = stratified_split(full.labels, test_fraction, seed)
    return Split(train=full.subset(train_idx), test=full.subset(test_idx))


def _target_size(size: int | tuple[int, int] | None) -> tuple[int, int] | None:
    if size is None:
        return None
    pair = (size, size) if isinstance(size, int) else tuple(size)
    if len(pair) != 2 or not all(isinstance(s, int) and s >= 1 for s in pair):
        raise DataError(f"size must be a positive integer or (height, width), got {size!r}")
    return (pair[0], pair[1])


def _class_folders(root: Path) -> list[str]:
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(classes) < 2:
        raise DataError(
            f"image folder {root} needs one sub-folder per class (at least 2), found {len(classes)}"
        )
    return classes


def _load_part(
    folder: Path,
    classes: Sequence[str],
    size: tuple[int, int] | None,
    grayscale: bool,
    name: str,
) -> ArrayDataset:
    extra = sorted(
        p.name
        for p in folder.iterdir()
        if p.is_dir() and not p.name.startswith(".") and p.name not in classes
    )
    if extra:
        raise DataError(f"image folder {folder} has class folder {extra[0]!r} not in training")
    images: list[NDArray[np.float32]] = []
    labels: list[int] = []
    for label, cls in enumerate(classes):
        files = (
            sorted(
                p
                for p in (folder / cls).glob("*")
                if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
            )
            if (folder / cls).is_dir()
            else []
        )
        for file in files:
            images.append(_read_image(file, size, grayscale))
            labels.append(label)
    if not images:
        raise DataError(f"image folder {folder} holds no {'/'.join(IMAGE_SUFFIXES)} images")
    shapes = {img.shape for img in images}
    if len(shapes) > 1:
        first = images[0].shape
        odd = next(i for i, img in enumerate(images) if img.shape != first)
        raise DataError(
            f"image folder {folder}: images differ in size ({first[1:]} vs "
            f"{images[odd].shape[1:]}); pass size=(height, width) to resize them"
        )
    return ArrayDataset(
        features=np.stack(images),
        labels=np.asarray(labels, dtype=np.int64),
        num_classes=len(classes),
        name=name,
        class_names=list(classes),
    )


def _read_image(path: Path, size: tuple[int, int] | None, grayscale: bool) -> NDArray[np.float32]:
    """One image as ``(channels, height, width)`` float32 in [0, 1]."""
    try:
        with Image.open(path) as img:
            converted = img.convert("L" if grayscale else "RGB")
            if size is not None:
                converted = converted.resize((size[1], size[0]), Image.Resampling.BILINEAR)
            pixels = np.asarray(converted, dtype=np.float32) / np.float32(255.0)
    except (UnidentifiedImageError, OSError) as exc:
        raise DataError(f"cannot read image {path} ({exc}); remove or replace the file") from exc
    return pixels[None, :, :] if grayscale else np.transpose(pixels, (2, 0, 1))
