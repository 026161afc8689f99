"""PATE: private aggregation of teacher ensembles (Papernot et al. 2017, 2018).

- :func:`teacher_assignment`, :func:`train_teachers`: disjoint, unit-keyed partitions and one
  teacher per partition; :class:`TeacherEnsemble` gives vote histograms (private).
- Aggregators :class:`LNMax`, :class:`GNMax`, :class:`ConfidentGNMax`: noisy labels with the
  data-independent privacy event; ``data_dependent_rdp`` for the data-dependent bound.
- :func:`train_pate`: teachers → aggregation → student, as a :class:`PateResult`.
- :func:`publish_data_dependent_rdp` (and :func:`publish_gnmax_rdp`,
  :func:`publish_confident_gnmax_rdp`): a publishable, noisy data-dependent RDP through its smooth
  sensitivity (Papernot et al. 2018, App. B), as a :class:`PublishedRdp`.
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
from deniable.placements.pate.smooth_sensitivity import (
    PublishedRdp,
    SmoothSensitivityAnalysis,
    analyse_confident_gnmax,
    analyse_gnmax,
    publish_confident_gnmax_rdp,
    publish_data_dependent_rdp,
    publish_gnmax_rdp,
)
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
    "PublishedRdp",
    "SmoothSensitivityAnalysis",
    "TeacherEnsemble",
    "analyse_confident_gnmax",
    "analyse_gnmax",
    "publish_confident_gnmax_rdp",
    "publish_data_dependent_rdp",
    "publish_gnmax_rdp",
    "teacher_assignment",
    "train_pate",
    "train_teachers",
]
