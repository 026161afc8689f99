"""The JSON-lines backend: ``runs/<id>/metrics.jsonl``, one JSON object per line.

Always available (standard library only) and easy to read back with :func:`read_jsonl`. Each
line is flushed as it is written, so a crash loses at most the line being written, and a resumed
run appends to the same file. Lines::

    {"kind": "params", "time": ..., "params": {"config.epochs": 30, ...}}
    {"kind": "metric", "time": ..., "name": "privacy/epsilon", "value": 1.9, "step": 120}
    {"kind": "artifact", "time": ..., "path": "report.html", "sha256": "..."}

An artifact inside the run folder is referenced in place; one outside it is copied to
``artifacts/`` first. ``path`` is relative to the run folder.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO

from deniable.tracking.base import (
    TrackerBase,
    TrackingError,
    check_artifact,
    check_name,
    check_step,
    flatten_params,
    metric_value,
)

FILENAME = "metrics.jsonl"


def new_run_id() -> str:
    """``<timestamp>-<random>``, the same form as ``deniable run``'s run folders."""
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)


class JsonlTracker(TrackerBase):
    """Append parameters, metrics and artifacts to ``run_dir/metrics.jsonl``.

    ``run_dir=None`` makes a fresh ``root/<id>`` (``root`` defaults to ``runs``); pass the run
    folder of ``deniable run`` to keep the metrics beside its ``result.json``.
    """

    def __init__(self, run_dir: Path | str | None = None, *, root: Path | str = "runs") -> None:
        if run_dir is None:
            run_dir = Path(root) / new_run_id()
        self.run_dir = Path(run_dir)
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self._file: IO[str] = (self.run_dir / FILENAME).open("a", encoding="utf-8")
        except OSError as exc:
            raise TrackingError(f"cannot write {self.run_dir / FILENAME}: {exc.strerror}") from None

    @property
    def path(self) -> Path:
        """The metrics file."""
        return self.run_dir / FILENAME

    def _write(self, record: dict[str, object]) -> None:
        self._check_open()
        line = json.dumps({"time": time.time(), **record}, allow_nan=False)
        self._file.write(line + "\n")
        self._file.flush()

    def log_params(self, params: Mapping[str, object]) -> None:
        self._write({"kind": "params", "params": flatten_params(params)})

    def log_metric(self, name: str, value: float, step: int | None = None) -> None:
        number = metric_value(name, value)
        if number is None:
            return
        self._write(
            {"kind": "metric", "name": check_name(name), "value": number, "step": check_step(step)}
        )

    def log_artifact(self, path: Path | str) -> None:
        self._check_open()
        source = check_artifact(path).resolve()
        root = self.run_dir.resolve()
        if source.is_relative_to(root):
            kept = source
        else:
            (root / "artifacts").mkdir(exist_ok=True)
            kept = root / "artifacts" / source.name
            shutil.copyfile(source, kept)
        digest = hashlib.sha256(kept.read_bytes()).hexdigest()
        self._write(
            {"kind": "artifact", "path": kept.relative_to(root).as_posix(), "sha256": digest}
        )

    def close(self) -> None:
        if not self._closed:
            self._file.close()
        super().close()


def read_jsonl(path: Path | str) -> list[dict[str, object]]:
    """The records of a ``metrics.jsonl`` file (or of ``path/metrics.jsonl`` for a run folder)."""
    file = Path(path)
    if file.is_dir():
        file = file / FILENAME
    if not file.is_file():
        raise TrackingError(f"{file} does not exist; give a run folder with a {FILENAME}")
    records = []
    for number, line in enumerate(file.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            raise TrackingError(f"{file}:{number} is not a JSON object") from None
        if not isinstance(record, dict):
            raise TrackingError(f"{file}:{number} is not a JSON object")
        records.append(record)
    return records


def metric_history(records: list[dict[str, object]], name: str) -> list[tuple[int | None, float]]:
    """``(step, value)`` of every record of metric ``name``, in the order logged."""
    out: list[tuple[int | None, float]] = []
    for record in records:
        if record.get("kind") == "metric" and record.get("name") == name:
            step, value = record.get("step"), record.get("value")
            assert isinstance(value, int | float) and (step is None or isinstance(step, int))
            out.append((step, float(value)))
    return out
