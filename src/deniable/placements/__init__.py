"""Other noise placements (DESIGN §4): where else the noise can go, each returning its event.

- :mod:`~deniable.placements.pate`: PATE, noise on the teachers' votes (central DP);
  data-dependent accounting in :mod:`deniable.accounting.pate_rdp`.
- :mod:`~deniable.placements.label_dp`, :mod:`~deniable.placements.label_dp_training`:
  randomized response on labels and RR-with-prior multi-stage training (label DP).
- :mod:`~deniable.placements.input_perturbation`: noise on each record (local DP).
- :mod:`~deniable.placements.output_perturbation`: noise on a convex model's minimiser
  (central DP).
- :mod:`~deniable.placements.objective_perturbation`: a random linear term in a convex model's
  objective (central DP).
- :mod:`~deniable.placements.noise_layer`: noise on a layer's activations at inference (local DP
  of each forward-pass input).

Every result names its :class:`Guarantee` (``central-dp``, ``label-dp``, ``local-dp``) and
accounts its event with :func:`deniable.accounting.epsilon` into a :class:`PrivacyClaim`, so ε
values of different kinds are never mixed.
"""

from __future__ import annotations

from deniable.placements.fit import Fit, fit_classifier, predict_proba
from deniable.placements.guarantee import Guarantee, PrivacyClaim, claim
from deniable.placements.input_perturbation import (
    LocalRelease,
    clamp_features,
    gaussian_features,
    laplace_features,
    randomize_categories,
)
from deniable.placements.label_dp import LabelRelease, best_top_k, randomize_labels, rr_with_prior
from deniable.placements.label_dp_training import LabelDpTraining, train_label_dp
from deniable.placements.noise_layer import NoiseLayer, insert_noise_layer
from deniable.placements.objective_perturbation import (
    ObjectiveNoise,
    objective_noise_parameters,
    objective_perturbation,
    perturbed_logistic_regression,
)
from deniable.placements.output_perturbation import (
    ConvexRelease,
    Sensitivity,
    fit_logistic_regression,
    output_perturbation,
    output_perturbation_gaussian,
)

__all__ = [
    "ConvexRelease",
    "Fit",
    "Guarantee",
    "LabelDpTraining",
    "LabelRelease",
    "LocalRelease",
    "NoiseLayer",
    "ObjectiveNoise",
    "PrivacyClaim",
    "Sensitivity",
    "best_top_k",
    "claim",
    "clamp_features",
    "fit_classifier",
    "fit_logistic_regression",
    "gaussian_features",
    "insert_noise_layer",
    "laplace_features",
    "objective_noise_parameters",
    "objective_perturbation",
    "output_perturbation",
    "output_perturbation_gaussian",
    "perturbed_logistic_regression",
    "predict_proba",
    "randomize_categories",
    "randomize_labels",
    "rr_with_prior",
    "train_label_dp",
]
