"""RMIA, the relative membership inference attack of Zarifzadeh, Liu, Mahloujifar & Shokri (2024).

"Low-cost high-power membership inference attacks" (ICML 2024). With ``Pr(x|θ)`` the target
model's probability of the true label of ``x`` (the ``confidence`` signal) and ``Pr(x)`` its
average over reference models θ' (shadow models trained on population data), the likelihood
ratio of ``x`` is ``LR(x) = Pr(x|θ) / Pr(x)``. ``x`` is compared with population samples ``z``
(examples the target did not train on):

    score(x) = |{z : LR(x) / LR(z) > γ}| / |Z|  ∈ [0, 1],

the fraction of population samples that ``x`` dominates by a factor ``γ`` (the paper's test
``Score_MIA``; higher = more likely member).

Parameters:

- ``gamma`` (γ > 0, default 1): how much more likely under θ than under the references ``x``
  must be, relative to ``z``, to count ``z`` as dominated. The paper uses γ = 1 for most
  experiments and reports the attack to be insensitive to γ near 1.
- Online (:func:`rmia_online`): the references are trained on random halves of the population,
  so about half of them include ``x``; ``Pr(x)`` is the mean over all references.
- Offline (:func:`rmia_offline`): only references that did not train on ``x`` (OUT) are used;
  the missing IN half is approximated linearly from the OUT mean (paper §3, "offline"):
  ``Pr(x) = ½((1 + a)·Pr_OUT(x) + (1 − a))`` with ``a ∈ [0, 1]``; ``a = 1`` trusts the OUT mean
  as is, smaller ``a`` assumes IN models give x a higher probability. The paper tunes ``a`` by
  attacking one reference model with the others (0.3 is a common choice). The same rule
  gives ``Pr(z)``.

With several queries (augmentations) the score is computed per query and averaged (our choice;
it keeps scores in [0, 1]). Scores only; ε bounds come from :mod:`deniable.audit.bounds`.
"""

from __future__ import annotations

from dataclasses import dataclass
from numbers import Real
from typing import ClassVar

import numpy as np
from numpy.typing import ArrayLike, NDArray

from deniable.audit.mia_common import (
    membership_mask,
    need_counts,
    need_models,
    per_example,
    per_model,
)
from deniable.errors import DeniableError, InvalidParameterError, check_positive

_TINY = float(np.finfo(np.float64).tiny)


@dataclass(frozen=True, eq=False)
class RmiaResult:
    """RMIA scores in [0, 1] (one per target example) and the ratios behind them.

    ``ratio_x`` ``(n, n_queries)`` and ``ratio_z`` ``(m, n_queries)`` are ``Pr(·|θ)/Pr(·)``;
    ``offline_a`` is ``None`` online.
    """

    name: ClassVar[str] = "rmia"
    scores: NDArray[np.float64]
    gamma: float
    offline_a: float | None
    ratio_x: NDArray[np.float64]
    ratio_z: NDArray[np.float64]
    n_references: int


def rmia_online(
    target_x: ArrayLike,
    references_x: ArrayLike,
    target_z: ArrayLike,
    references_z: ArrayLike,
    *,
    gamma: float = 1.0,
) -> RmiaResult:
    """Online RMIA: ``Pr(·)`` is the mean over all reference models.

    ``target_x``: the target's true-label probability on the n examples, ``(n,)`` or
    ``(n, n_queries)``; ``references_x``: the reference models' on the same,
    ``(n_references, n[, n_queries])``; ``target_z``/``references_z`` the same for m population
    samples the target did not train on. At least 2 reference models.
    """
    px, rx, pz, rz = _inputs(target_x, references_x, target_z, references_z)
    return _score(px, rx.mean(axis=0), pz, rz.mean(axis=0), gamma, None, rx.shape[0])


def rmia_offline(
    target_x: ArrayLike,
    references_x: ArrayLike,
    target_z: ArrayLike,
    references_z: ArrayLike,
    *,
    offline_a: float,
    membership_x: ArrayLike | None = None,
    membership_z: ArrayLike | None = None,
    gamma: float = 1.0,
) -> RmiaResult:
    """Offline RMIA: ``Pr(·) = ½((1 + a)·Pr_OUT(·) + (1 − a))`` from OUT references only.

    Arguments as :func:`rmia_online`; ``membership_x`` ``(n_references, n)`` (and
    ``membership_z`` ``(n_references, m)``) mark where a reference trained on an example, and
    those pairs are left out of ``Pr_OUT``; ``None`` means no reference trained on any of them.
    Every example needs one OUT reference.
    """
    if isinstance(offline_a, bool) or not isinstance(offline_a, Real) or not 0 <= offline_a <= 1:
        raise InvalidParameterError("offline_a", offline_a, "a number in [0, 1]")
    px, rx, pz, rz = _inputs(target_x, references_x, target_z, references_z)
    a = float(offline_a)
    out_x = _out_mean("membership_x", rx, membership_x)
    out_z = _out_mean("membership_z", rz, membership_z)
    prior_x = 0.5 * ((1 + a) * out_x + (1 - a))
    prior_z = 0.5 * ((1 + a) * out_z + (1 - a))
    return _score(px, prior_x, pz, prior_z, gamma, a, rx.shape[0])


def _score(
    px: NDArray[np.float64],
    prior_x: NDArray[np.float64],
    pz: NDArray[np.float64],
    prior_z: NDArray[np.float64],
    gamma: float,
    offline_a: float | None,
    references: int,
) -> RmiaResult:
    gamma = check_positive("gamma", gamma)
    ratio_x = px / np.maximum(prior_x, _TINY)
    ratio_z = pz / np.maximum(prior_z, _TINY)
    scores = np.empty_like(ratio_x)
    for q in range(ratio_x.shape[1]):
        # LR(x)/LR(z) > γ  ⇔  LR(z) < LR(x)/γ (all ratios are >= 0): count by binary search.
        sorted_z = np.sort(ratio_z[:, q])
        scores[:, q] = np.searchsorted(sorted_z, ratio_x[:, q] / gamma, side="left")
    return RmiaResult(
        scores=scores.mean(axis=1) / ratio_z.shape[0],
        gamma=gamma,
        offline_a=offline_a,
        ratio_x=ratio_x,
        ratio_z=ratio_z,
        n_references=references,
    )


def _out_mean(
    name: str, references: NDArray[np.float64], membership: ArrayLike | None
) -> NDArray[np.float64]:
    if membership is None:
        return references.mean(axis=0)
    mask = membership_mask(name, membership, references.shape[:2])
    need_counts("RMIA offline", "OUT", (~mask).sum(axis=0), 1)
    weight = (~mask)[:, :, None].astype(np.float64)
    return (weight * references).sum(axis=0) / weight.sum(axis=0)


def _inputs(
    target_x: ArrayLike, references_x: ArrayLike, target_z: ArrayLike, references_z: ArrayLike
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    px = _probabilities("target_x", per_example("target_x", target_x))
    pz = _probabilities("target_z", per_example("target_z", target_z))
    if pz.shape[1] != px.shape[1]:
        raise DeniableError(
            f"target_z has {pz.shape[1]} queries per example but target_x has {px.shape[1]}"
        )
    rx = _probabilities("references_x", per_model("references_x", references_x, *px.shape))
    rz = _probabilities("references_z", per_model("references_z", references_z, *pz.shape))
    need_models("RMIA", rx.shape[0])
    if rz.shape[0] != rx.shape[0]:
        raise DeniableError(
            f"references_x has {rx.shape[0]} reference models but references_z has {rz.shape[0]}"
        )
    return px, rx, pz, rz


def _probabilities(name: str, values: NDArray[np.float64]) -> NDArray[np.float64]:
    if (values < 0).any() or (values > 1).any():
        raise DeniableError(f"{name} must be probabilities in [0, 1] (the true-class confidence)")
    return values
