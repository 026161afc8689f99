"""How a threshold-based lower bound picks its threshold(s), as typed strategies.

A threshold t turns scores into the test "score ≥ t ⇒ member" with false-positive rate FPR (on
non-members) and false-negative rate FNR (on members). A strategy returns candidate thresholds
with one-sided Clopper–Pearson upper bounds on FPR and FNR that hold *simultaneously* for all its
candidates with probability ≥ 1 − α; the caller maximises its bound over the candidates. The error
budget α is split by a union bound: α/2 for the FPR bounds and α/2 for the FNR bounds, further
divided by the number of candidates when there are several.

* :class:`FixedThreshold` — one threshold fixed before seeing the scores.
* :class:`HeldOutThreshold` — choose the threshold on a random split of the scores, evaluate on
  the rest (Jagielski et al. 2020, "Auditing differentially private machine learning").
* :class:`BonferroniThresholds` — evaluate a grid of k thresholds on all the scores, each bound at
  level α/(2k) (Bonferroni), and report the best; valid for the maximum.

Like every Clopper–Pearson audit (Nasr et al. 2021, "Adversary instantiation"), these treat the
scores as independent trials: each score comes from its own run of the mechanism (or from runs
whose randomness is independent). For many canaries in *one* training run use
:func:`deniable.audit.bounds.one_run_lower_bound` instead.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from deniable.audit.bounds_binomial import cp_upper
from deniable.errors import DeniableError, InvalidParameterError, check_count

Array = NDArray[np.float64]
Objective = Callable[[Array, Array], Array]
"""Maps (FPR upper bounds, FNR upper bounds) to the value a bound maximises (vectorised)."""


@dataclass(frozen=True, eq=False)
class ThresholdCandidates:
    """Thresholds whose error-rate upper bounds all hold together with probability ≥ 1 − α.

    ``false_positives``/``false_negatives`` are the counts observed on the ``n_nonmembers`` and
    ``n_members`` scores the bounds were computed on; each one-sided bound is at level
    ``per_test_alpha``.
    """

    thresholds: Array
    fpr_upper: Array
    fnr_upper: Array
    false_positives: NDArray[np.int64]
    false_negatives: NDArray[np.int64]
    n_members: int
    n_nonmembers: int
    per_test_alpha: float


class ThresholdStrategy(ABC):
    """Base class: turns member and non-member scores into :class:`ThresholdCandidates`."""

    @abstractmethod
    def candidates(
        self, members: Array, nonmembers: Array, alpha: float, objective: Objective
    ) -> ThresholdCandidates:
        """Candidates whose bounds hold simultaneously with probability ≥ 1 − ``alpha``."""

    @abstractmethod
    def describe(self) -> str:
        """One line naming the strategy and its parameters (recorded in the result)."""


def evaluate_thresholds(
    members: Array, nonmembers: Array, thresholds: Array, per_test_alpha: float
) -> ThresholdCandidates:
    """Observed FP/FN counts at fixed ``thresholds`` and their Clopper–Pearson upper bounds."""
    fp = nonmembers.size - np.searchsorted(np.sort(nonmembers), thresholds, side="left")
    fn = np.searchsorted(np.sort(members), thresholds, side="left")
    return ThresholdCandidates(
        thresholds=np.asarray(thresholds, dtype=np.float64),
        fpr_upper=cp_upper(fp, nonmembers.size, per_test_alpha),
        fnr_upper=cp_upper(fn, members.size, per_test_alpha),
        false_positives=fp.astype(np.int64),
        false_negatives=fn.astype(np.int64),
        n_members=members.size,
        n_nonmembers=nonmembers.size,
        per_test_alpha=per_test_alpha,
    )


@dataclass(frozen=True)
class FixedThreshold(ThresholdStrategy):
    """One threshold chosen before seeing the scores; α/2 for each error rate."""

    threshold: float

    def __post_init__(self) -> None:
        if not isinstance(self.threshold, int | float) or not math.isfinite(self.threshold):
            raise InvalidParameterError("threshold", self.threshold, "a finite number")

    def candidates(
        self, members: Array, nonmembers: Array, alpha: float, objective: Objective
    ) -> ThresholdCandidates:
        t = np.array([float(self.threshold)])
        return evaluate_thresholds(members, nonmembers, t, alpha / 2)

    def describe(self) -> str:
        return f"fixed(threshold={self.threshold!r})"


@dataclass(frozen=True)
class HeldOutThreshold(ThresholdStrategy):
    """Pick the threshold on a random ``fraction`` of each class, bound it on the rest.

    The threshold maximises the same bound (at the same confidence) on the selection part; the
    reported bound uses only the held-out part, so choosing it costs no multiple-testing penalty
    but the bound sees only 1 − ``fraction`` of the data. ``seed`` fixes the split.
    """

    fraction: float = 0.5
    seed: int = 0

    def __post_init__(self) -> None:
        ok = isinstance(self.fraction, int | float) and 0 < self.fraction < 1
        if not ok or isinstance(self.fraction, bool):
            raise InvalidParameterError("fraction", self.fraction, "in the open interval (0, 1)")
        check_count("seed", self.seed, minimum=0)

    def candidates(
        self, members: Array, nonmembers: Array, alpha: float, objective: Objective
    ) -> ThresholdCandidates:
        rng = np.random.default_rng(self.seed)
        sel_in, eval_in = self._split(members, rng, "members")
        sel_out, eval_out = self._split(nonmembers, rng, "non-members")
        grid = _midpoints(np.concatenate([sel_in, sel_out]))
        if grid.size == 0:  # one distinct score: no threshold separates anything
            grid = np.array([np.inf])
        chosen = evaluate_thresholds(sel_in, sel_out, grid, alpha / 2)
        best = int(np.argmax(objective(chosen.fpr_upper, chosen.fnr_upper)))
        return evaluate_thresholds(eval_in, eval_out, grid[best : best + 1], alpha / 2)

    def _split(self, scores: Array, rng: np.random.Generator, label: str) -> tuple[Array, Array]:
        k = math.floor(self.fraction * scores.size)
        if k < 1 or k >= scores.size:
            raise DeniableError(
                f"HeldOutThreshold(fraction={self.fraction}) leaves no {label} on one side of "
                f"the split of {scores.size}; give more scores or use BonferroniThresholds"
            )
        perm = rng.permutation(scores.size)
        return scores[perm[:k]], scores[perm[k:]]

    def describe(self) -> str:
        return f"held-out(fraction={self.fraction}, seed={self.seed})"


@dataclass(frozen=True)
class BonferroniThresholds(ThresholdStrategy):
    """A grid of at most ``count`` thresholds on all the scores, each bound at level α/(2k).

    The grid is placed at order statistics: half at non-member ranks j (threshold just above the
    (j+1)-th largest non-member score), half at member ranks j (the (j+1)-th smallest member
    score), with j on a geometric-plus-linear grid that depends only on the class sizes. At a
    non-member rank the FPR bound uses the rank j as its count (the true FPR there is then
    stochastically below Beta(j + 1, n − j), exactly the Clopper–Pearson pivot; ties only make it
    smaller) and the FNR bound the observed count among the members, which are independent of the
    threshold; members' ranks symmetrically. So all 2k one-sided bounds are exact, and by the
    union bound they hold together with probability ≥ 1 − α: the maximum over the grid is valid.
    """

    count: int = 64

    def __post_init__(self) -> None:
        check_count("count", self.count, minimum=2)

    def candidates(
        self, members: Array, nonmembers: Array, alpha: float, objective: Objective
    ) -> ThresholdCandidates:
        n_in, n_out = members.size, nonmembers.size
        ranks_out = _rank_grid(n_out, self.count // 2)
        ranks_in = _rank_grid(n_in, self.count - self.count // 2)
        k = ranks_out.size + ranks_in.size
        a = alpha / (2 * k)
        desc_out = np.sort(nonmembers)[::-1]
        asc_in = np.sort(members)
        t_out = np.nextafter(desc_out[ranks_out], np.inf)  # score ≥ t ⇔ score > that order stat
        t_in = asc_in[ranks_in]
        observed = evaluate_thresholds(members, nonmembers, np.concatenate([t_out, t_in]), a)
        fpr_upper = observed.fpr_upper.copy()
        fnr_upper = observed.fnr_upper.copy()
        fpr_upper[: ranks_out.size] = cp_upper(ranks_out, n_out, a)  # the rank, not the count
        fnr_upper[ranks_out.size :] = cp_upper(ranks_in, n_in, a)
        return ThresholdCandidates(
            thresholds=observed.thresholds,
            fpr_upper=fpr_upper,
            fnr_upper=fnr_upper,
            false_positives=observed.false_positives,
            false_negatives=observed.false_negatives,
            n_members=n_in,
            n_nonmembers=n_out,
            per_test_alpha=a,
        )

    def describe(self) -> str:
        return f"bonferroni(count={self.count})"


def _rank_grid(n: int, h: int) -> NDArray[np.int64]:
    """About ``h`` ranks in [0, n − 1]: geometric (dense near 0) and linear, deduplicated."""
    h = max(h, 1)
    geo = np.geomspace(1, n, h - h // 2)
    lin = np.linspace(1, n, h // 2)
    return np.unique(np.floor(np.concatenate([geo, lin])).astype(np.int64) - 1)


def _midpoints(scores: Array) -> Array:
    """Thresholds strictly between consecutive distinct scores."""
    u = np.unique(scores)
    mid = u[:-1] / 2 + u[1:] / 2
    return np.where(mid > u[:-1], mid, u[1:])
