"""Per-step metrics during training: an adapter from training callbacks to a :class:`Tracker`.

Three ways in, one logger:

- ``logger(step, stats, epsilon)``: the per-step hook a trainer calls after each DP-SGD step
  with that step's :class:`~deniable.train.dp_step.StepStats` and, when it computed one, the ε
  spent so far (the trainer computes ε once per epoch: it is an accountant call, not free).
- ``logger.after_step(training, stats)``: for your own loop over
  :meth:`~deniable.train.private.PrivateTraining.batches`; computes ε itself every
  ``epsilon_every`` steps from the training's recorded events.
- ``logger.progress(done, total)``: the ``(done, total)`` progress callback of
  :func:`deniable.train.trainer.train_private` and :func:`deniable.pipeline.run`, logging the
  fraction done; :func:`chain_progress` runs it beside a progress bar.

Metric names: ``privacy/epsilon`` (from the accountant), and the *diagnostics*
``diagnostic/batch_loss``, ``diagnostic/clipped_fraction``, ``diagnostic/batch_units``. The
diagnostics are computed on the private batch **without noise** (the mean loss, the fraction of
units whose gradient was clipped, the realised Poisson batch size): they are not covered by ε,
like the accuracies in ``result.json``. Keep such logs with the data owner, or turn them off with
``diagnostics=False``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from deniable.errors import InvalidParameterError, check_count, check_delta
from deniable.tracking.base import Tracker

Progress = Callable[[int, int], None]


class StepStatsLike(Protocol):
    """What a step reports (:class:`deniable.train.dp_step.StepStats` has these)."""

    @property
    def units(self) -> int: ...
    @property
    def clipped_fraction(self) -> float: ...
    @property
    def loss(self) -> float: ...


class EpsilonLike(Protocol):
    @property
    def epsilon(self) -> float: ...


class TrainingLike(Protocol):
    """What :meth:`StepLogger.after_step` reads (:class:`PrivateTraining` has these)."""

    @property
    def steps_done(self) -> int: ...
    def epsilon(self, delta: float, accountant: str | None = None) -> EpsilonLike: ...


class StepLogger:
    """Log per-step training metrics to ``tracker``.

    ``every``: log the diagnostics and progress of every ``every``-th step (ε whenever given).
    ``delta``, ``epsilon_every``, ``accountant``: for :meth:`after_step`, compute ε at δ =
    ``delta`` every ``epsilon_every`` steps (default: never, when no δ is given).
    ``diagnostics=False`` logs ε and progress only (see the module docstring).
    """

    def __init__(
        self,
        tracker: Tracker,
        *,
        every: int = 1,
        delta: float | None = None,
        epsilon_every: int | None = None,
        accountant: str | None = None,
        diagnostics: bool = True,
    ) -> None:
        self.tracker = tracker
        self.every = check_count("every", every)
        self.delta = None if delta is None else check_delta(delta)
        if epsilon_every is not None:
            check_count("epsilon_every", epsilon_every)
            if delta is None:
                raise InvalidParameterError("delta", None, "given when epsilon_every is")
        self.epsilon_every = epsilon_every
        self.accountant = accountant
        self.diagnostics = diagnostics

    def __call__(
        self, step: int, stats: StepStatsLike | None = None, epsilon: float | None = None
    ) -> None:
        """Log step ``step`` (1 for the first step taken): its stats and ε when given."""
        if epsilon is not None:
            self.tracker.log_metric("privacy/epsilon", epsilon, step)
        if stats is None or not self.diagnostics or step % self.every:
            return
        self.tracker.log_metric("diagnostic/batch_loss", stats.loss, step)
        self.tracker.log_metric("diagnostic/clipped_fraction", stats.clipped_fraction, step)
        self.tracker.log_metric("diagnostic/batch_units", stats.units, step)

    def after_step(self, training: TrainingLike, stats: StepStatsLike | None = None) -> None:
        """Call after ``training.step(batch)`` in your own loop."""
        step = training.steps_done
        epsilon = None
        if self.delta is not None and self.epsilon_every and step % self.epsilon_every == 0:
            epsilon = training.epsilon(self.delta, self.accountant).epsilon
        self(step, stats, epsilon)

    def progress(self, done: int, total: int) -> None:
        """A ``(done, total)`` progress callback: logs ``train/progress`` = done / total."""
        if total > 0 and (done % self.every == 0 or done == total):
            self.tracker.log_metric("train/progress", done / total, done)


def chain_progress(*callbacks: Progress | None) -> Progress | None:
    """One ``(done, total)`` callback that calls each given one in order (None ones skipped)."""
    chosen = [c for c in callbacks if c is not None]
    if not chosen:
        return None
    if len(chosen) == 1:
        return chosen[0]

    def progress(done: int, total: int) -> None:
        for callback in chosen:
            callback(done, total)

    return progress
