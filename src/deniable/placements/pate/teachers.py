"""The teacher ensemble of PATE: one model per disjoint partition of the private data, and their
vote histograms on public queries (Papernot et al. 2017).

Teachers are trained without noise; privacy comes only from the noisy aggregation of their votes
(:mod:`deniable.placements.pate.aggregators`). The teachers and the raw vote histograms are
therefore private and must never be released.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from deniable.data import ArrayDataset
from deniable.errors import InvalidParameterError, check_count
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
) -> TeacherEnsemble:
    """Partition ``private`` by privacy unit (:func:`teacher_assignment` of
    ``private.unit_keys()``) and fit one ``fit.model`` per partition; ``progress(done, total)`` is
    called after each teacher."""
    t = check_count("num_teachers", num_teachers, minimum=2)
    assignment = teacher_assignment(private.unit_keys(), t, seed=partition_seed)
    models = []
    sizes = np.bincount(assignment, minlength=t).astype(np.int64)
    for teacher in range(t):
        part = assignment == teacher
        models.append(
            fit_classifier(
                private.features[part],
                private.labels[part],
                feature_shape=private.feature_shape,
                num_classes=private.num_classes,
                fit=fit,
                seed_offset=teacher,
            )
        )
        if progress is not None:
            progress(teacher + 1, t)
    return TeacherEnsemble(
        tuple(models), assignment, sizes, private.num_classes, private.feature_shape
    )


def _features(features: NDArray[np.float32], shape: tuple[int, ...]) -> torch.Tensor:
    x = np.asarray(features, dtype=np.float32)
    if x.ndim < 1 or x.shape[0] < 1 or int(np.prod(x.shape[1:])) != int(np.prod(shape)):
        raise InvalidParameterError(
            "features", x.shape, f"(queries >= 1, *{shape}) matching the private data"
        )
    return torch.as_tensor(x).reshape(x.shape[0], *shape)
