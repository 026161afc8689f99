"""Open trackers by name: ``jsonl``, ``tensorboard``, ``mlflow`` (for a ``--track`` flag)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from deniable.tracking.base import MultiTracker, Tracker, TrackingError
from deniable.tracking.jsonl import JsonlTracker
from deniable.tracking.mlflow_backend import DEFAULT_URI, MlflowTracker, mlflow_available
from deniable.tracking.tensorboard_backend import TensorBoardTracker, tensorboard_available

TRACKERS: tuple[str, ...] = ("jsonl", "tensorboard", "mlflow")
"""The backend names :func:`open_tracker` knows."""


def available_trackers() -> list[str]:
    """The backends whose packages are installed here (``jsonl`` always is)."""
    found = ["jsonl"]
    if tensorboard_available():
        found.append("tensorboard")
    if mlflow_available():
        found.append("mlflow")
    return found


def open_tracker(
    names: str | Sequence[str],
    run_dir: Path | str,
    *,
    mlflow_uri: str = DEFAULT_URI,
    experiment: str = "deniable",
) -> Tracker:
    """Open the named backend(s) for the run in ``run_dir``.

    ``jsonl`` writes ``run_dir/metrics.jsonl``; ``tensorboard`` writes event files to
    ``run_dir/tensorboard``; ``mlflow`` opens a run named after ``run_dir`` in ``experiment``
    at ``mlflow_uri``. Several names give a :class:`MultiTracker`. A missing package or an
    unknown name raises :class:`TrackingError` with what to do.
    """
    chosen = [names] if isinstance(names, str) else list(names)
    if not chosen:
        raise TrackingError(f"give at least one tracker: {', '.join(TRACKERS)}")
    unknown = [n for n in chosen if n not in TRACKERS]
    if unknown:
        raise TrackingError(f"unknown tracker {unknown[0]!r}; use one of {', '.join(TRACKERS)}")
    folder = Path(run_dir)
    opened: list[Tracker] = []
    try:
        for name in dict.fromkeys(chosen):  # each once, in the order given
            if name == "jsonl":
                opened.append(JsonlTracker(folder))
            elif name == "tensorboard":
                opened.append(TensorBoardTracker(folder / "tensorboard"))
            else:
                opened.append(
                    MlflowTracker(mlflow_uri, experiment=experiment, run_name=folder.name)
                )
    except BaseException:
        for tracker in opened:
            tracker.close()
        raise
    return opened[0] if len(opened) == 1 else MultiTracker(opened)
