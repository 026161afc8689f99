"""The teacher ensemble of PATE: one model per disjoint partition of the private data, and their
vote histograms on public queries (Papernot et al. 2017).

Teachers are trained without noise; privacy comes only from the noisy aggregation of their votes
(:mod:`deniable.placements.pate.aggregators`). The teachers and the raw vote histograms are
therefore private and must never be released.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from deniable.data import ArrayDataset
from deniable.errors import InvalidParameterError, check_count
from deniable.fleet import items_done, run_shares
from deniable.models import build_model
from deniable.placements.fit import Fit, fit_classifier
from deniable.placements.pate.partition import teacher_assignment

Progress = Callable[[int, int], None]


@dataclass(frozen=True, eq=False)
class TeacherEnsemble:
    """Teachers trained on disjoint partitions. ``assignment[i]`` is the teacher of private
    example i; ``partition_sizes[t]`` how many examples teacher t saw. Private: do not release."""

    models: tuple[nn.Module, ...]
    assignment: NDArray[np.int64]
    partition_sizes: NDArray[np.int64]
    num_classes: int
    feature_shape: tuple[int, ...]

    @property
    def num_teachers(self) -> int:
        return len(self.models)

    def predictions(
        self, features: NDArray[np.float32], batch_size: int = 1024
    ) -> NDArray[np.int64]:
        """Each teacher's predicted class on each query: shape (teachers, queries)."""
        x = _features(features, self.feature_shape)
        out = np.empty((self.num_teachers, x.shape[0]), dtype=np.int64)
        with torch.no_grad():
            for t, model in enumerate(self.models):
                model.eval()
                for start in range(0, x.shape[0], batch_size):
                    logits = model(x[start : start + batch_size])
                    out[t, start : start + batch_size] = logits.argmax(dim=1).numpy()
        return out

    def votes(self, features: NDArray[np.float32]) -> NDArray[np.int64]:
        """The vote histogram of each query, n_j(x) = #teachers predicting j: (queries, classes).

        Each row sums to the number of teachers."""
        preds = self.predictions(features)
        queries = preds.shape[1]
        votes = np.zeros((queries, self.num_classes), dtype=np.int64)
        for t in range(self.num_teachers):
            np.add.at(votes, (np.arange(queries), preds[t]), 1)
        return votes


def train_teachers(
    private: ArrayDataset,
    *,
    num_teachers: int,
    fit: Fit,
    partition_seed: int = 0,
    progress: Progress | None = None,
    workers: int = 1,
) -> TeacherEnsemble:
    """Partition ``private`` by privacy unit (:func:`teacher_assignment` of
    ``private.unit_keys()``) and fit one ``fit.model`` per partition; ``progress(done, total)`` is
    called after each teacher. ``workers > 1`` fits the teachers in that many processes (one
    torch thread each); each teacher depends only on its partition and its seed
    (``fit.seed + t``), so the ensemble is the one-process ensemble."""
    t = check_count("num_teachers", num_teachers, minimum=2)
    assignment = teacher_assignment(private.unit_keys(), t, seed=partition_seed)
    sizes = np.bincount(assignment, minlength=t).astype(np.int64)
    if check_count("workers", workers) > 1:
        models = _fit_in_workers(private, assignment, t, fit, workers, progress)
    else:
        models = []
        for teacher in range(t):
            models.append(_fit_teacher(private, assignment, teacher, fit))
            if progress is not None:
                progress(teacher + 1, t)
    return TeacherEnsemble(
        tuple(models), assignment, sizes, private.num_classes, private.feature_shape
    )


def _fit_teacher(
    private: ArrayDataset, assignment: NDArray[np.int64], teacher: int, fit: Fit
) -> nn.Module:
    part = assignment == teacher
    return fit_classifier(
        private.features[part],
        private.labels[part],
        feature_shape=private.feature_shape,
        num_classes=private.num_classes,
        fit=fit,
        seed_offset=teacher,
    )


def _fit_share(
    private: ArrayDataset, assignment: NDArray[np.int64], teachers: list[int], *, fit: Fit
) -> list[dict[str, torch.Tensor]]:
    torch.set_num_threads(1)
    return [_fit_teacher(private, assignment, t, fit).state_dict() for t in teachers]


def _fit_in_workers(
    private: ArrayDataset,
    assignment: NDArray[np.int64],
    count: int,
    fit: Fit,
    workers: int,
    progress: Progress | None,
) -> list[nn.Module]:
    """Teachers split into ``workers`` interleaved shares, fitted in spawned processes;
    ``progress`` counts teachers as each share finishes."""
    shares = [list(range(w, count, workers)) for w in range(min(workers, count))]
    task = partial(_fit_share, private, assignment, fit=fit)
    results = run_shares(task, shares, backend="processes", done=items_done(shares, progress))
    states = {
        teacher: state
        for share, share_states in zip(shares, results, strict=True)
        for teacher, state in zip(share, share_states, strict=True)
    }
    models = []
    for teacher in range(count):
        model = build_model(fit.model, private.feature_shape, private.num_classes)
        model.load_state_dict(states[teacher])
        model.eval()
        models.append(model)
    return models


def _features(features: NDArray[np.float32], shape: tuple[int, ...]) -> torch.Tensor:
    x = np.asarray(features, dtype=np.float32)
    if x.ndim < 1 or x.shape[0] < 1 or int(np.prod(x.shape[1:])) != int(np.prod(shape)):
        raise InvalidParameterError(
            "features", x.shape, f"(queries >= 1, *{shape}) matching the private data"
        )
    return torch.as_tensor(x).reshape(x.shape[0], *shape)
