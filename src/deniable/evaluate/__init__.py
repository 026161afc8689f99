"""Beyond privacy: what differential privacy costs, and buys, besides accuracy.

- :mod:`.fairness`: per-group accuracy, TPR, FPR and selection rate with their gaps; the
  disparate impact of DP (Bagdasaryan et al. 2019); a class under-sampling helper.
- :mod:`.generalisation`: train/test gaps and Yeom et al.'s (2018) threshold attack beside the
  membership-advantage bound that (ε, δ)-DP implies.
- :mod:`.robustness`: FGSM and PGD (L∞, L2) and empirical robust accuracy;
  :mod:`.smoothing`: randomized-smoothing certificates (Cohen et al. 2019);
  :mod:`.pixeldp`: PixelDP noise layers and certificates (Lécuyer et al. 2019).
- :mod:`.poisoning`: label-flip and backdoor attacks with k poisoned examples, their success,
  and group privacy (ε_k = kε, δ_k = k e^{(k−1)ε} δ) to say when DP bounds them;
  :func:`poisoning_vs_noise` trains clean and poisoned models at several noise levels.
- :func:`beyond_privacy_summary`: fairness and generalisation of a private model next to its
  baseline, as one JSON-ready dict.
- :func:`evaluate_run`: all of the above (fairness, generalisation, FGSM/PGD, smoothing
  certificates) for the private model of a finished ``runs/<id>``, stored in its result.json.
"""

from __future__ import annotations

from deniable.evaluate.fairness import (
    DisparateImpact,
    FairnessReport,
    GroupDrop,
    GroupMetrics,
    disparate_impact,
    fairness_report,
    group_counts,
    group_fairness,
    undersample_class,
    undersampled_split,
)
from deniable.evaluate.generalisation import (
    AdvantageBound,
    GeneralisationReport,
    ThresholdAttack,
    advantage_bound,
    generalisation_report,
    threshold_attack,
)
from deniable.evaluate.pixeldp import (
    PixelDPCertificate,
    PixelDPConstruction,
    PixelDPMLP,
    PixelDPNoise,
    PixelDPRadius,
    SpectralNormLinear,
    max_epsilon,
    pixeldp_certified_accuracy,
    pixeldp_certify,
    pixeldp_radius,
    pixeldp_robust,
)
from deniable.evaluate.poisoning import (
    GroupPrivacy,
    PatchTrigger,
    PoisonedData,
    PoisoningAssessment,
    assess_poisoning,
    attack_success_rate,
    backdoor,
    backdoor_success_rate,
    group_privacy,
    label_flip,
    label_flip_success_rate,
)
from deniable.evaluate.poisoning_noise import NoiseLevel, poisoning_vs_noise
from deniable.evaluate.robustness import (
    Attack,
    L2Ball,
    LinfBall,
    RobustAccuracy,
    fgsm,
    pgd,
    robust_accuracy,
)
from deniable.evaluate.run_evaluation import evaluate_run
from deniable.evaluate.smoothing import (
    ABSTAIN,
    SmoothedClassifier,
    SmoothingCertificate,
    SmoothingReport,
    certified_radius,
    certify_dataset,
    train_noise_augmented,
)
from deniable.evaluate.summary import beyond_privacy_summary

__all__ = [
    "ABSTAIN",
    "AdvantageBound",
    "Attack",
    "DisparateImpact",
    "FairnessReport",
    "GeneralisationReport",
    "GroupDrop",
    "GroupMetrics",
    "GroupPrivacy",
    "L2Ball",
    "LinfBall",
    "NoiseLevel",
    "PatchTrigger",
    "PixelDPCertificate",
    "PixelDPConstruction",
    "PixelDPMLP",
    "PixelDPNoise",
    "PixelDPRadius",
    "PoisonedData",
    "PoisoningAssessment",
    "RobustAccuracy",
    "SmoothedClassifier",
    "SmoothingCertificate",
    "SmoothingReport",
    "SpectralNormLinear",
    "ThresholdAttack",
    "advantage_bound",
    "assess_poisoning",
    "attack_success_rate",
    "backdoor",
    "backdoor_success_rate",
    "beyond_privacy_summary",
    "certified_radius",
    "certify_dataset",
    "disparate_impact",
    "evaluate_run",
    "fairness_report",
    "fgsm",
    "generalisation_report",
    "group_counts",
    "group_fairness",
    "group_privacy",
    "label_flip",
    "label_flip_success_rate",
    "max_epsilon",
    "pgd",
    "pixeldp_certified_accuracy",
    "pixeldp_certify",
    "pixeldp_radius",
    "pixeldp_robust",
    "poisoning_vs_noise",
    "robust_accuracy",
    "threshold_attack",
    "train_noise_augmented",
    "undersample_class",
    "undersampled_split",
]
