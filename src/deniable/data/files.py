"""Finding a dataset's files under ``--data-dir``, with one-line errors when they are absent."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from deniable.data.errors import MissingDataError


def require_dir(data_dir: Path | str | None, dataset: str, example_file: str) -> Path:
    """``data_dir`` as a Path; ``None`` or a missing folder raises :class:`MissingDataError`."""
    if data_dir is None:
        raise MissingDataError(
            f"dataset {dataset!r} needs its files: pass --data-dir DIR "
            f"(a folder holding {example_file})"
        )
    path = Path(data_dir)
    if not path.is_dir():
        raise MissingDataError(
            f"data folder {path} does not exist: pass --data-dir DIR holding {example_file}"
        )
    return path


def find_file(data_dir: Path, subdir: str, names: Sequence[str], dataset: str) -> Path:
    """The first of ``names`` found in ``data_dir/subdir`` or ``data_dir`` itself.

    Both layouts are accepted so that ``--data-dir`` may name the shared data root (holding
    ``mnist/``, ``adult/``, ...) or the dataset's own folder.
    """
    for folder in (data_dir / subdir, data_dir):
        for name in names:
            candidate = folder / name
            if candidate.is_file():
                return candidate
    raise MissingDataError(
        f"{dataset} file {names[0]} not found in {data_dir / subdir} or {data_dir}: "
        "pass the folder holding it with --data-dir"
    )
