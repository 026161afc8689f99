"""LiRA, the likelihood-ratio attack of Carlini, Chien, Nasr, Song, Terzis & Tramèr (2022).

"Membership inference attacks from first principles" (IEEE S&P 2022). Shadow models are trained
on known random halves of a population; for each target example ``x`` the logit-scaled confidence
``φ = φ(f(x)_y)`` (:mod:`deniable.audit.signals`) of the models that trained on ``x`` (IN) and of
those that did not (OUT) is fitted with a Gaussian each, per augmentation query.

- Online (Algorithm 1): score = ``log N(φ; μ_in, σ_in²) − log N(φ; μ_out, σ_out²)``.
- Offline (§VI-C): only OUT models are needed; a one-sided test that φ is *larger* than the OUT
  distribution predicts. The paper's ``Λ = 1 − Pr[Z > φ]`` with ``Z ~ N(μ_out, σ_out²)`` is
  reported here as ``−log Pr[Z > φ]`` (the same ordering, without saturating at 1 in floating
  point; ``scipy.stats.norm.logsf`` of the z-score ``(φ − μ_out)/σ_out``).

With several queries (augmentations) the per-query scores are averaged, as in the authors' code.

Means are per example and per query. Variances are per example only with at least
:data:`PER_EXAMPLE_VARIANCE_MIN_SHADOWS` shadows, the paper's advice (§VI-B: with few shadows a
global variance is more robust); the global variance of a query is the mean squared deviation of
every IN (resp. OUT) observation from its own example's mean, pooled over examples. Standard
deviations are population (ddof = 0) estimates, floored at :data:`SIGMA_FLOOR`.

Scores only: ε lower bounds and ROC curves come from :mod:`deniable.audit.metrics` and
:mod:`deniable.audit.bounds`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats

from deniable.audit.mia_common import (
    membership_mask,
    need_counts,
    need_models,
    per_example,
    per_model,
)

PER_EXAMPLE_VARIANCE_MIN_SHADOWS = 64
"""Below this many shadow models LiRA uses a global (per-query) variance by default."""

SIGMA_FLOOR = 1e-8
"""Lower bound on fitted standard deviations (a shadow set that agrees exactly has σ = 0)."""


@dataclass(frozen=True)
class GaussianFit:
    """Per-example, per-query Gaussian fits of φ: arrays ``(n, n_queries)`` and counts ``(n,)``."""

    mean: NDArray[np.float64]
    std: NDArray[np.float64]
    count: NDArray[np.int64]


@dataclass(frozen=True, eq=False)
class LiraResult:
    """LiRA scores (one per target example, higher = more likely member) and the fits used.

    ``fit_in`` is ``None`` offline. ``fixed_variance`` says whether σ was global per query.
    """

    name: ClassVar[str] = "lira"
    scores: NDArray[np.float64]
    online: bool
    fixed_variance: bool
    fit_in: GaussianFit | None
    fit_out: GaussianFit
    target: NDArray[np.float64]


def fit_gaussians(
    shadows: ArrayLike, membership: ArrayLike, *, inside: bool, fixed_variance: bool
) -> GaussianFit:
    """Mean and standard deviation of φ over the shadows that did (``inside``) or did not train on
    each example. ``shadows`` is ``(n_shadows, n)`` or ``(n_shadows, n, n_queries)``;
    ``membership`` is ``(n_shadows, n)`` bool. With ``fixed_variance`` the σ of a query is pooled
    over examples (deviations from each example's own mean) and broadcast to ``(n, n_queries)``.
    """
    phi = np.asarray(shadows, dtype=np.float64)
    if phi.ndim == 2:
        phi = phi[:, :, None]
    mask = membership_mask("membership", membership, phi.shape[:2])
    side = mask if inside else ~mask
    weight = side[:, :, None].astype(np.float64)
    count = side.sum(axis=0).astype(np.int64)
    safe = np.maximum(count, 1)[:, None]
    mean = (weight * phi).sum(axis=0) / safe
    squares = weight * (phi - mean[None]) ** 2
    if fixed_variance:
        pooled = squares.sum(axis=(0, 1)) / max(int(count.sum()), 1)
        var = np.broadcast_to(pooled, mean.shape).copy()
    else:
        var = squares.sum(axis=0) / safe
    return GaussianFit(mean=mean, std=np.maximum(np.sqrt(var), SIGMA_FLOOR), count=count)


def lira_online(
    target: ArrayLike,
    shadows: ArrayLike,
    membership: ArrayLike,
    *,
    fixed_variance: bool | None = None,
) -> LiraResult:
    """Online LiRA: ``mean over queries of log N(φ; μ_in, σ_in²) − log N(φ; μ_out, σ_out²)``.

    ``target``: the target model's φ on the n examples, ``(n,)`` or ``(n, n_queries)``;
    ``shadows``: the shadows' φ on the same examples and queries, ``(n_shadows, n[, n_queries])``;
    ``membership``: ``(n_shadows, n)`` bool, True where shadow s trained on example i. Every
    example needs an IN and an OUT shadow (two of each for per-example variances);
    ``fixed_variance=None`` uses a global variance below 64 shadows.
    """
    phi, shadow_phi, mask, fixed = _inputs(
        "LiRA online", target, shadows, membership, fixed_variance
    )
    need_counts("LiRA online", "IN", mask.sum(axis=0), 1 if fixed else 2)
    need_counts("LiRA online", "OUT", (~mask).sum(axis=0), 1 if fixed else 2)
    fit_in = fit_gaussians(shadow_phi, mask, inside=True, fixed_variance=fixed)
    fit_out = fit_gaussians(shadow_phi, mask, inside=False, fixed_variance=fixed)
    ratio = stats.norm.logpdf(phi, fit_in.mean, fit_in.std) - stats.norm.logpdf(
        phi, fit_out.mean, fit_out.std
    )
    return LiraResult(
        scores=ratio.mean(axis=1),
        online=True,
        fixed_variance=fixed,
        fit_in=fit_in,
        fit_out=fit_out,
        target=phi,
    )


def lira_offline(
    target: ArrayLike,
    shadows: ArrayLike,
    membership: ArrayLike,
    *,
    fixed_variance: bool | None = None,
) -> LiraResult:
    """Offline LiRA: ``mean over queries of −log Pr[Z > φ]``, ``Z ~ N(μ_out, σ_out²)``.

    Arguments as :func:`lira_online`; only the OUT shadows of each example are used (every
    example needs one, two for per-example variances), so the shadows can be trained before the
    target examples are known.
    """
    phi, shadow_phi, mask, fixed = _inputs(
        "LiRA offline", target, shadows, membership, fixed_variance
    )
    need_counts("LiRA offline", "OUT", (~mask).sum(axis=0), 1 if fixed else 2)
    fit_out = fit_gaussians(shadow_phi, mask, inside=False, fixed_variance=fixed)
    z = (phi - fit_out.mean) / fit_out.std
    return LiraResult(
        scores=(-stats.norm.logsf(z)).mean(axis=1),
        online=False,
        fixed_variance=fixed,
        fit_in=None,
        fit_out=fit_out,
        target=phi,
    )


def _inputs(
    attack: str,
    target: ArrayLike,
    shadows: ArrayLike,
    membership: ArrayLike,
    fixed_variance: bool | None,
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.bool_], bool]:
    phi = per_example("target", target)
    n, queries = phi.shape
    shadow_phi = per_model("shadows", shadows, n, queries)
    need_models(attack, shadow_phi.shape[0])
    mask = membership_mask("membership", membership, (shadow_phi.shape[0], n))
    fixed = (
        shadow_phi.shape[0] < PER_EXAMPLE_VARIANCE_MIN_SHADOWS
        if fixed_variance is None
        else bool(fixed_variance)
    )
    return phi, shadow_phi, mask, fixed
