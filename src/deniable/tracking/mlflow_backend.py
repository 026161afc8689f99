"""The MLflow backend: one MLflow run per tracker, through ``mlflow.tracking.MlflowClient``.

Needs MLflow (``pip install 'deniable[mlflow]'``, which installs ``mlflow-skinny``; the full
``mlflow`` package works too); without it the constructor raises :class:`TrackingError` saying
so. The client is used directly (no ``mlflow.start_run`` global state), so several trackers can
be open at once.

Storage: ``tracking_uri`` is any MLflow tracking URI; the default ``file:./mlruns`` is MLflow's
file store in the current folder (view with ``mlflow ui --backend-store-uri ./mlruns``). MLflow
3 keeps that store in maintenance mode and refuses it unless ``MLFLOW_ALLOW_FILE_STORE`` is
true; for a ``file:`` URI this backend sets that variable when it is unset (an explicit
``false`` is respected). A database URI (``sqlite:///mlflow.db``) needs the full ``mlflow``
package.
"""

from __future__ import annotations

import os
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

INSTALL_HINT = "pip install 'deniable[mlflow]' (or pip install mlflow-skinny)"
DEFAULT_URI = "file:./mlruns"
DEFAULT_EXPERIMENT = "deniable"
MAX_PARAM_LENGTH = 6000  # MLflow's limit on a parameter value's length


def mlflow_available() -> bool:
    """Whether ``mlflow`` imports."""
    try:
        import mlflow  # noqa: F401
    except ImportError:
        return False
    return True


class MlflowTracker(TrackerBase):
    """Log to a new MLflow run in ``experiment`` (created if missing) at ``tracking_uri``."""

    def __init__(
        self,
        tracking_uri: str = DEFAULT_URI,
        *,
        experiment: str = DEFAULT_EXPERIMENT,
        run_name: str | None = None,
    ) -> None:
        try:
            from mlflow.tracking import MlflowClient
        except ImportError:
            raise TrackingError(f"MLflow logging needs MLflow: {INSTALL_HINT}") from None
        uri = _absolute_file_uri(tracking_uri)
        if uri.startswith("file:"):
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        try:
            self._client: Any = MlflowClient(tracking_uri=uri)
            found = self._client.get_experiment_by_name(experiment)
            experiment_id = (
                found.experiment_id if found else self._client.create_experiment(experiment)
            )
            run = self._client.create_run(experiment_id, run_name=run_name)
        except Exception as exc:  # MLflow raises its own exception types for store problems
            raise TrackingError(f"cannot open MLflow store {uri}: {_first_line(exc)}") from None
        self.tracking_uri = uri
        self.experiment_id: str = experiment_id
        self.run_id: str = run.info.run_id

    def log_params(self, params: Mapping[str, object]) -> None:
        self._check_open()
        from mlflow.entities import Param

        flat = flatten_params(params)
        batch = [Param(k, str(v)[:MAX_PARAM_LENGTH]) for k, v in sorted(flat.items())]
        try:
            for start in range(0, len(batch), 100):  # MLflow takes at most 100 params a batch
                self._client.log_batch(self.run_id, params=batch[start : start + 100])
        except Exception as exc:  # e.g. a parameter logged again with another value
            raise TrackingError(f"MLflow refused the parameters: {_first_line(exc)}") from None

    def log_metric(self, name: str, value: float, step: int | None = None) -> None:
        self._check_open()
        number = metric_value(name, value)
        if number is None:
            return
        checked = check_step(step)
        self._client.log_metric(
            self.run_id, check_name(name), number, step=0 if checked is None else checked
        )

    def log_artifact(self, path: Path | str) -> None:
        self._check_open()
        self._client.log_artifact(self.run_id, str(check_artifact(path)))

    def close(self) -> None:
        if not self._closed:
            self._client.set_terminated(self.run_id)
        super().close()


def _absolute_file_uri(uri: str) -> str:
    """``file:./mlruns`` → ``file:///abs/mlruns`` (MLflow resolves relative file URIs
    inconsistently); other URIs unchanged."""
    if uri.startswith("file:") and not uri.startswith("file:/"):
        return Path(uri[len("file:") :]).resolve().as_uri()
    return uri


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
