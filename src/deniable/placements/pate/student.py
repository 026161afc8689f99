"""PATE end to end: teachers on private partitions, noisy aggregation of their votes on public
unlabelled queries, a student trained on the answered queries (Papernot et al. 2017, 2018).

What is released is the student (and the noisy labels); both are post-processing of the
aggregator's outputs, so the student's guarantee is the aggregation event's, central DP for one
privacy unit of the private data. The public data are assumed public: they are not protected.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from torch import nn

from deniable.accounting.pate_rdp import DataDependentRdp
from deniable.accounting.rdp import DEFAULT_ORDERS, Orders
from deniable.data import ArrayDataset
from deniable.errors import InvalidParameterError
from deniable.events import Neighbouring
from deniable.mechanisms import RandomSource
from deniable.placements.fit import Fit, fit_classifier
from deniable.placements.guarantee import PrivacyClaim
from deniable.placements.pate.aggregators import Aggregation, Aggregator
from deniable.placements.pate.teachers import Progress, TeacherEnsemble, train_teachers


@dataclass(frozen=True, eq=False)
class PateResult:
    """A trained student and how it was obtained.

    ``student`` and ``aggregation`` (noisy labels, answered mask, event) may be released.
    ``teachers`` and ``votes`` are private: they are kept for the data-dependent analysis only.
    """

    student: nn.Module
    aggregation: Aggregation
    aggregator: Aggregator
    teachers: TeacherEnsemble
    votes: NDArray[np.int64]
    unit: str

    def epsilon(
        self,
        delta: float,
        *,
        accountant: str = "pld",
        relation: Neighbouring = Neighbouring.ADD_REMOVE,
    ) -> PrivacyClaim:
        """The data-independent central-DP ε of everything released (the aggregation event)."""
        return self.aggregation.epsilon(
            delta, accountant=accountant, relation=relation, unit=self.unit
        )

    def data_dependent_rdp(self, orders: Orders = DEFAULT_ORDERS) -> DataDependentRdp:
        """The data-dependent RDP curve on the actual votes (Papernot et al. 2018). Its ε is a
        function of private data: ``publishable`` is False (the smooth-sensitivity release that
        would make it publishable is :func:`~deniable.placements.pate.smooth_sensitivity.
        publish_data_dependent_rdp`); else publish :meth:`epsilon`."""
        return self.aggregator.data_dependent_rdp(self.votes, self.aggregation, orders)


def train_pate(
    private: ArrayDataset,
    public_features: NDArray[np.float32],
    *,
    num_teachers: int,
    aggregator: Aggregator,
    teacher_fit: Fit,
    student_fit: Fit,
    partition_seed: int = 0,
    rng: RandomSource | None = None,
    progress: Progress | None = None,
    workers: int = 1,
) -> PateResult:
    """Train ``num_teachers`` teachers on disjoint unit-keyed partitions of ``private``, label
    ``public_features`` with ``aggregator`` and fit the student on the answered queries.

    ``rng`` (default: a fresh secure source) draws the aggregation noise; ``progress(done,
    total)`` is called after each teacher; ``workers`` processes fit the teachers.
    """
    x = np.asarray(public_features, dtype=np.float32)
    if x.ndim < 2 or x.shape[0] < 1:
        raise InvalidParameterError("public_features", x.shape, "(queries >= 1, *feature_shape)")
    teachers = train_teachers(
        private,
        num_teachers=num_teachers,
        fit=teacher_fit,
        partition_seed=partition_seed,
        progress=progress,
        workers=workers,
    )
    votes = teachers.votes(x)
    aggregation = aggregator.aggregate(votes, rng)
    mask = aggregation.answered
    student = fit_classifier(
        x[mask],
        aggregation.labels[mask],
        feature_shape=private.feature_shape,
        num_classes=private.num_classes,
        fit=student_fit,
    )
    unit = (
        "example (in one teacher partition)"
        if private.keys is None
        else "user key (all its examples in one teacher partition)"
    )
    return PateResult(student, aggregation, aggregator, teachers, votes, unit)
