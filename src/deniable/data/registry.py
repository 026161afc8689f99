"""Datasets by name or path: the one entry point the CLI and the trainer use.

Names: ``digits`` (embedded, offline), ``mnist``, ``fashion-mnist``, ``adult``, ``german`` (their
files under ``data_dir``). Paths: a ``.npz`` archive or an image folder. A ``.csv`` file needs a
label column, so it goes through :func:`deniable.data.load_csv` (or the config's ``label_column``
key) instead. ``seed`` chooses the split where the data has no official one (digits, german,
npz with ``x``/``y``, image folders); MNIST and Adult keep their official splits.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from deniable.data.dataset import Split
from deniable.data.digits import load_digits
from deniable.data.errors import DataError, MissingDataError
from deniable.data.idx import load_mnist
from deniable.data.image_folder import load_image_folder
from deniable.data.npz import load_npz
from deniable.data.tabular import load_adult, load_german

_LOADERS: dict[str, Callable[[Path | None, int], Split]] = {
    "digits": lambda data_dir, seed: load_digits(seed=seed),
    "mnist": lambda data_dir, seed: load_mnist(data_dir),
    "fashion-mnist": lambda data_dir, seed: load_mnist(data_dir, fashion=True),
    "adult": lambda data_dir, seed: load_adult(data_dir),
    "german": lambda data_dir, seed: load_german(data_dir, seed=seed),
}

DATASETS: tuple[str, ...] = tuple(_LOADERS)
"""The dataset names :func:`load_dataset` knows; ``digits`` needs no files."""


def load_dataset(name: str, data_dir: Path | str | None = None, *, seed: int = 0) -> Split:
    """The :class:`Split` called ``name`` (see :data:`DATASETS`) or stored at the path ``name``.

    A relative path is looked up as given, then under ``data_dir``. Unknown names, missing files
    and CSV paths raise a :class:`~deniable.errors.DeniableError` with one line saying what to do.
    """
    folder = None if data_dir is None else Path(data_dir)
    key = name.strip().lower()
    if key in _LOADERS:
        return _LOADERS[key](folder, seed)
    path = _resolve(name, folder)
    if path.suffix.lower() == ".csv":
        raise DataError(
            f"CSV dataset {path} needs a label column: call deniable.data.load_csv(path, "
            "label_column=...) or set label_column in the run config"
        )
    if path.suffix.lower() == ".npz" and path.is_file():
        return load_npz(path, seed=seed)
    if path.is_dir():
        return load_image_folder(path, seed=seed)
    if path.suffix.lower() == ".npz" or len(path.parts) > 1:
        raise MissingDataError(f"dataset file {path} does not exist: check the path or --data-dir")
    choices = ", ".join(DATASETS)
    raise DataError(
        f"unknown dataset {name!r}: use one of {choices}, or the path of a .npz file or an image "
        "folder (with --data-dir for their files)"
    )


def _resolve(name: str, data_dir: Path | None) -> Path:
    path = Path(name).expanduser()
    if not path.exists() and data_dir is not None and not path.is_absolute():
        candidate = data_dir / path
        if candidate.exists():
            return candidate
    return path
