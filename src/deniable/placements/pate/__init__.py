"""PATE: private aggregation of teacher ensembles (Papernot et al. 2017, 2018).

- :func:`teacher_assignment`, :func:`train_teachers`: disjoint, unit-keyed partitions and one
  teacher per partition; :class:`TeacherEnsemble` gives vote histograms (private).
- Aggregators :class:`LNMax`, :class:`GNMax`, :class:`ConfidentGNMax`: noisy labels with the
  data-independent privacy event; ``data_dependent_rdp`` for the data-dependent bound.
- :func:`train_pate`: teachers → aggregation → student, as a :class:`PateResult`.
"""

from __future__ import annotations

from deniable.placements.pate.aggregators import (
    UNANSWERED,
    Aggregation,
    Aggregator,
    ConfidentGNMax,
    GNMax,
    LNMax,
)
from deniable.placements.pate.partition import teacher_assignment
from deniable.placements.pate.student import PateResult, train_pate
from deniable.placements.pate.teachers import TeacherEnsemble, train_teachers

__all__ = [
    "UNANSWERED",
    "Aggregation",
    "Aggregator",
    "ConfidentGNMax",
    "GNMax",
    "LNMax",
    "PateResult",
    "TeacherEnsemble",
    "teacher_assignment",
    "train_pate",
    "train_teachers",
]
