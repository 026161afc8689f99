"""The TensorBoard backend: ``torch.utils.tensorboard.SummaryWriter`` event files.

Needs the ``tensorboard`` package (``pip install 'deniable[tensorboard]'`` or ``pip install
tensorboard``); without it the constructor raises :class:`TrackingError` saying so. Metrics are
scalars (``add_scalar``); parameters go to the HParams dashboard (``add_hparams``, in the same
run folder) and, as a table, to the Text dashboard; TensorBoard has no artifact store, so an
artifact is copied to ``log_dir/artifacts/`` and named in the Text dashboard.

View with ``tensorboard --logdir runs``.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from deniable.tracking.base import (
    TrackerBase,
    TrackingError,
    check_artifact,
    check_name,
    check_step,
    flatten_params,
    metric_value,
)

INSTALL_HINT = "pip install 'deniable[tensorboard]' (or pip install tensorboard)"


def tensorboard_available() -> bool:
    """Whether the ``tensorboard`` package imports."""
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        return False
    return True


class TensorBoardTracker(TrackerBase):
    """Write TensorBoard event files to ``log_dir`` (created if missing)."""

    def __init__(self, log_dir: Path | str) -> None:
        if not tensorboard_available():
            raise TrackingError(f"TensorBoard logging needs tensorboard: {INSTALL_HINT}")
        from torch.utils.tensorboard import SummaryWriter

        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._writer: Any = SummaryWriter(log_dir=str(self.log_dir))
        self._artifacts: list[str] = []

    def log_params(self, params: Mapping[str, object]) -> None:
        self._check_open()
        flat = flatten_params(params)
        if not flat:
            return
        rows = "\n".join(f"| {key} | {_cell(value)} |" for key, value in sorted(flat.items()))
        self._writer.add_text("params", "| parameter | value |\n|---|---|\n" + rows)
        # run_name "." keeps the HParams record in this run's folder (not a sub-run).
        self._writer.add_hparams(flat, {}, run_name=".")
        self._writer.flush()

    def log_metric(self, name: str, value: float, step: int | None = None) -> None:
        self._check_open()
        number = metric_value(name, value)
        if number is None:
            return
        self._writer.add_scalar(check_name(name), number, global_step=check_step(step))

    def log_artifact(self, path: Path | str) -> None:
        self._check_open()
        source = check_artifact(path)
        folder = self.log_dir / "artifacts"
        folder.mkdir(exist_ok=True)
        shutil.copyfile(source, folder / source.name)
        self._artifacts.append(source.name)
        self._writer.add_text("artifacts", "\n".join(f"- {n}" for n in self._artifacts))

    def close(self) -> None:
        if not self._closed:
            self._writer.close()
        super().close()


def _cell(value: object) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")
