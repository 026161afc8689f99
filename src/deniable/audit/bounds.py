"""Empirical ε lower bounds from attack scores, always at a stated confidence and δ.

Four routes, each returning a :class:`LowerBound`:

* :func:`clopper_pearson_lower_bound` — exact binomial bounds on a thresholded test's error rates
  (Jagielski et al. 2020; Nasr et al. 2021); valid for any mechanism.
* :func:`gdp_lower_bound` — the same error-rate bounds read as a Gaussian-DP μ and converted to ε
  (Nasr et al. 2023); tighter, valid if the trade-off curve is Gaussian.
* :func:`one_run_lower_bound` — m randomly included canaries in one training run (Steinke, Nasr &
  Jagielski 2023).
* :func:`one_run_fdp_lower_bound` — the same canaries and guesses analysed with the Gaussian
  trade-off curve (Mahloujifar, Melis & Chaudhuri 2025); tighter, valid if each canary's
  trade-off curve is Gaussian (μ-GDP).

The threshold-based routes take a typed :class:`ThresholdStrategy`: :class:`FixedThreshold`,
:class:`HeldOutThreshold` or :class:`BonferroniThresholds` (the default). :func:`compare` sets a
lower bound beside the accountant's ε.
"""

from __future__ import annotations

from deniable.audit.bounds_binomial import clopper_pearson_interval, cp_lower, cp_upper
from deniable.audit.bounds_one_run import (
    one_run_epsilon,
    one_run_lower_bound,
    one_run_p_value,
)
from deniable.audit.bounds_one_run_fdp import (
    epsilon_dp_inverse_blow_up,
    fdp_tail_bound,
    gaussian_inverse_blow_up,
    one_run_fdp_lower_bound,
    one_run_fdp_mu,
    one_run_fdp_p_value,
)
from deniable.audit.bounds_result import LowerBound, compare
from deniable.audit.bounds_strategies import (
    BonferroniThresholds,
    FixedThreshold,
    HeldOutThreshold,
    ThresholdCandidates,
    ThresholdStrategy,
)
from deniable.audit.bounds_threshold import (
    DEFAULT_STRATEGY,
    clopper_pearson_lower_bound,
    gdp_lower_bound,
)

__all__ = [
    "DEFAULT_STRATEGY",
    "BonferroniThresholds",
    "FixedThreshold",
    "HeldOutThreshold",
    "LowerBound",
    "ThresholdCandidates",
    "ThresholdStrategy",
    "clopper_pearson_interval",
    "clopper_pearson_lower_bound",
    "compare",
    "cp_lower",
    "cp_upper",
    "epsilon_dp_inverse_blow_up",
    "fdp_tail_bound",
    "gaussian_inverse_blow_up",
    "gdp_lower_bound",
    "one_run_epsilon",
    "one_run_fdp_lower_bound",
    "one_run_fdp_mu",
    "one_run_fdp_p_value",
    "one_run_lower_bound",
    "one_run_p_value",
]
