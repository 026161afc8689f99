"""Experiment tracking: a run's parameters, metrics and files to JSON lines, TensorBoard or MLflow.

- :class:`Tracker`: the protocol (``log_params``, ``log_metric``, ``log_artifact``, ``close``);
  :class:`JsonlTracker` (``runs/<id>/metrics.jsonl``, always available),
  :class:`TensorBoardTracker` (needs ``tensorboard``), :class:`MlflowTracker` (needs MLflow:
  ``deniable[mlflow]``), :class:`MultiTracker`; :func:`open_tracker` by name.
- :func:`track_run`: log a finished run's ε, δ, ε curve, accuracies and audit bound.
- :class:`StepLogger`: per-step ε and (non-private) diagnostics during training.

Example (the JSON-lines backend needs nothing installed)::

    from deniable.tracking import JsonlTracker, track_run

    with JsonlTracker(result["run_dir"]) as tracker:
        track_run(result, tracker)

This is experiment tracking; the privacy events themselves are recorded by
:class:`deniable.train.privacy_tracker.PrivacyTracker`, and every ε logged here comes from it.
"""

from __future__ import annotations

from deniable.tracking.base import (
    MultiTracker,
    Tracker,
    TrackingError,
    flatten_params,
)
from deniable.tracking.jsonl import JsonlTracker, metric_history, read_jsonl
from deniable.tracking.mlflow_backend import MlflowTracker, mlflow_available
from deniable.tracking.registry import TRACKERS, available_trackers, open_tracker
from deniable.tracking.run import track_run
from deniable.tracking.steps import StepLogger, chain_progress
from deniable.tracking.tensorboard_backend import TensorBoardTracker, tensorboard_available

__all__ = [
    "TRACKERS",
    "JsonlTracker",
    "MlflowTracker",
    "MultiTracker",
    "StepLogger",
    "TensorBoardTracker",
    "Tracker",
    "TrackingError",
    "available_trackers",
    "chain_progress",
    "flatten_params",
    "metric_history",
    "mlflow_available",
    "open_tracker",
    "read_jsonl",
    "tensorboard_available",
    "track_run",
]
