"""The experiment-tracking protocol and what every backend shares.

A :class:`Tracker` receives parameters, metrics and files. It is *experiment* tracking (MLflow,
TensorBoard, a JSON-lines file) and has nothing to do with
:class:`deniable.train.privacy_tracker.PrivacyTracker`, which records privacy events: every ε a
tracker receives was computed by an accountant from recorded events (``track_run``), never the
other way round.

Values are flattened to ``key.sub.key`` names and to scalars every backend accepts: ``None``
and non-finite floats are dropped from metrics (a metric is a number), lists and dicts in
parameters become JSON strings.
"""

from __future__ import annotations

import json
import math
import numbers
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Protocol, runtime_checkable

from deniable.errors import DeniableError

ParamValue = str | int | float | bool


class TrackingError(DeniableError):
    """A tracking backend is missing or was used wrongly; the message says what to do."""


@runtime_checkable
class Tracker(Protocol):
    """Where a run's parameters, metrics and files go. Backends: :class:`JsonlTracker` (always
    available), :class:`TensorBoardTracker`, :class:`MlflowTracker`; :class:`MultiTracker`
    sends to several."""

    def log_params(self, params: Mapping[str, object]) -> None:
        """Record parameters (nested mappings are flattened to dotted keys)."""
        ...

    def log_metric(self, name: str, value: float, step: int | None = None) -> None:
        """Record one number, at training step ``step`` when it has one."""
        ...

    def log_artifact(self, path: Path | str) -> None:
        """Keep a copy of (or a reference to) the file at ``path`` with the run."""
        ...

    def close(self) -> None:
        """Flush and release the backend; later calls are errors."""
        ...


class TrackerBase:
    """Context-manager support and the closed-state check the backends share."""

    _closed = False

    def close(self) -> None:
        self._closed = True

    def _check_open(self) -> None:
        if self._closed:
            raise TrackingError(f"{type(self).__name__} is closed; open a new tracker")

    def __enter__(self) -> TrackerBase:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


class MultiTracker(TrackerBase):
    """Send everything to each of ``trackers``, in order (e.g. JSON lines and TensorBoard)."""

    def __init__(self, trackers: Iterable[Tracker]) -> None:
        self.trackers = list(trackers)

    def log_params(self, params: Mapping[str, object]) -> None:
        self._check_open()
        for tracker in self.trackers:
            tracker.log_params(params)

    def log_metric(self, name: str, value: float, step: int | None = None) -> None:
        self._check_open()
        for tracker in self.trackers:
            tracker.log_metric(name, value, step)

    def log_artifact(self, path: Path | str) -> None:
        self._check_open()
        for tracker in self.trackers:
            tracker.log_artifact(path)

    def close(self) -> None:
        if self._closed:
            return
        super().close()
        for tracker in self.trackers:
            tracker.close()


def flatten_params(params: Mapping[str, object], prefix: str = "") -> dict[str, ParamValue]:
    """``{"config": {"epochs": 3}}`` → ``{"config.epochs": 3}``; None → "None", lists → JSON.

    >>> flatten_params({"config": {"epochs": 3, "out": None}, "tags": [1, 2]})
    {'config.epochs': 3, 'config.out': 'None', 'tags': '[1, 2]'}
    """
    flat: dict[str, ParamValue] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_params(value, prefix=f"{name}."))
        else:
            flat[name] = param_value(value)
    return flat


def param_value(value: object) -> ParamValue:
    """A scalar every backend accepts for ``value`` (NaN and ±inf become strings)."""
    if isinstance(value, bool | str):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        number = float(value)
        return number if math.isfinite(number) else str(number)  # JSON has no NaN or inf
    if value is None:
        return "None"
    if isinstance(value, Path):
        return str(value)
    try:
        return json.dumps(value, default=str)
    except (TypeError, ValueError):
        return str(value)


def metric_value(name: str, value: object) -> float | None:
    """``value`` as a finite float, or None when it is None or not finite (NaN, ±∞).

    Booleans and non-numbers are errors: a metric is a number.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TrackingError(f"metric {name!r} must be a number, got {value!r}")
    number = float(value)
    return number if math.isfinite(number) else None


def check_name(name: object) -> str:
    """A non-empty metric name without leading or trailing spaces."""
    if not isinstance(name, str) or not name.strip() or name != name.strip():
        raise TrackingError(f"metric name must be a non-empty string, got {name!r}")
    return name


def check_step(step: object) -> int | None:
    """A step is None or an integer >= 0."""
    if step is None:
        return None
    if isinstance(step, bool) or not isinstance(step, numbers.Integral) or int(step) < 0:
        raise TrackingError(f"metric step must be an integer >= 0 or None, got {step!r}")
    return int(step)


def check_artifact(path: Path | str) -> Path:
    """An existing regular file."""
    file = Path(path)
    if not file.is_file():
        raise TrackingError(f"artifact {file} is not a file; log an existing file")
    return file
