"""Per-sample gradients, their norms, and clipping: the bounded-sensitivity half of DP-SGD.

- :func:`per_sample_gradients` / :func:`compute_per_sample`: one gradient per privacy unit
  (example, or any group key for user-level DP), by torch.func vmap or a per-example loop.
- :func:`clip_and_sum`: flat or per-layer clipping to C and the sum; sensitivity C.
- :func:`ghost_clipped_sum`: the same flat-clipped sum from ghost norms, without per-example
  gradients in memory, for models whose trainable layers all have a ghost rule.
"""

from deniable.grad.clip import ClipResult, clip_and_sum, clip_factors, clip_sensitivity
from deniable.grad.ghost import (
    GhostClipResult,
    GhostNorms,
    check_ghost_supported,
    ghost_clipped_sum,
    ghost_norms,
)
from deniable.grad.ghost_rules import register_ghost_rule
from deniable.grad.per_sample import (
    PerSampleResult,
    compute_per_sample,
    per_sample_gradients,
    per_sample_method,
    per_sample_norms,
)

__all__ = [
    "ClipResult",
    "GhostClipResult",
    "GhostNorms",
    "PerSampleResult",
    "check_ghost_supported",
    "clip_and_sum",
    "clip_factors",
    "clip_sensitivity",
    "compute_per_sample",
    "ghost_clipped_sum",
    "ghost_norms",
    "per_sample_gradients",
    "per_sample_method",
    "per_sample_norms",
    "register_ghost_rule",
]
