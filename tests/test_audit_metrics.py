"""Attack metrics against hand-computed examples, brute force and scikit-learn."""

from __future__ import annotations

import doctest
import itertools

import numpy as np
import pytest
from sklearn import metrics as skm

import deniable.audit.metrics as metrics_module
from deniable.audit.metrics import (
    ROC,
    attack_metrics,
    auc,
    membership_advantage,
    roc_curve,
    tpr_at_fpr,
    validate_scores,
)
from deniable.errors import DeniableError, InvalidParameterError


def test_roc_hand_example() -> None:
    roc = roc_curve([0.9, 0.8, 0.3, 0.1], [True, False, True, False])
    assert roc.fpr.tolist() == [0.0, 0.0, 0.5, 0.5, 1.0]
    assert roc.tpr.tolist() == [0.0, 0.5, 0.5, 1.0, 1.0]
    assert roc.thresholds.tolist() == [np.inf, 0.9, 0.8, 0.3, 0.1]
    assert (roc.n_members, roc.n_nonmembers) == (2, 2)
    assert auc(roc) == pytest.approx(0.75)


def test_roc_with_ties_moves_both_rates_at_once() -> None:
    # members {2, 1, 0}, non-members {1, 0}: the tie at 1 (and at 0) is one diagonal step.
    roc = roc_curve([1, 1, 0, 0, 2], [1, 0, 1, 0, 1])
    assert roc.thresholds.tolist() == [np.inf, 2.0, 1.0, 0.0]
    np.testing.assert_allclose(roc.tpr, [0, 1 / 3, 2 / 3, 1])
    np.testing.assert_allclose(roc.fpr, [0, 0, 1 / 2, 1])
    # Mann–Whitney by hand: 4 of 6 pairs, ties counted ½.
    assert auc(roc) == pytest.approx(4 / 6)


def test_roc_is_read_only_and_starts_and_ends_at_corners() -> None:
    rng = np.random.default_rng(3)
    roc = roc_curve(rng.normal(size=50), rng.random(50) < 0.4)
    assert (roc.fpr[0], roc.tpr[0], roc.fpr[-1], roc.tpr[-1]) == (0, 0, 1, 1)
    assert np.all(np.diff(roc.fpr) >= 0) and np.all(np.diff(roc.tpr) >= 0)
    with pytest.raises(ValueError):
        roc.fpr[0] = 0.5


def _brute_auc(scores: np.ndarray, member: np.ndarray) -> float:
    pos, neg = scores[member], scores[~member]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(pos, neg))
    return wins / (pos.size * neg.size)


@pytest.mark.parametrize("seed", range(5))
def test_auc_equals_brute_force_mann_whitney(seed: int) -> None:
    rng = np.random.default_rng(seed)
    member = rng.random(80) < 0.5
    scores = np.round(rng.normal(member * 0.7, 1.0), 1)  # rounding makes ties
    assert auc(roc_curve(scores, member)) == pytest.approx(_brute_auc(scores, member), abs=1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_roc_matches_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    member = rng.random(300) < 0.3
    scores = np.round(rng.normal(member * 1.0, 1.0), 1)
    roc = roc_curve(scores, member)
    fpr, tpr, thr = skm.roc_curve(member, scores, drop_intermediate=False)
    np.testing.assert_allclose(roc.fpr, fpr)
    np.testing.assert_allclose(roc.tpr, tpr)
    np.testing.assert_allclose(roc.thresholds[1:], thr[1:])
    assert auc(roc) == pytest.approx(skm.roc_auc_score(member, scores))


def _hand_roc() -> ROC:
    # members 10, 9, 5, 3; non-members 8, 4, 2, 1.
    return roc_curve([10, 9, 5, 3, 8, 4, 2, 1], [1, 1, 1, 1, 0, 0, 0, 0])


def test_tpr_at_fpr_hand_example() -> None:
    roc = _hand_roc()
    got = tpr_at_fpr(roc, (0.0, 0.25, 0.3, 0.5, 1.0))
    assert got == {0.0: 0.5, 0.25: 0.75, 0.3: 0.75, 0.5: 1.0, 1.0: 1.0}
    assert tpr_at_fpr(roc) == {0.01: 0.5, 0.001: 0.5, 0.0: 0.5}  # the default levels


def test_tpr_at_zero_fpr_is_members_strictly_above_all_nonmembers() -> None:
    # The top non-member ties with a member: that member does not count at 0 % FPR.
    roc = roc_curve([5, 4, 4, 1, 0], [1, 1, 0, 1, 0])
    assert tpr_at_fpr(roc, (0.0,))[0.0] == pytest.approx(1 / 3)


def test_membership_advantage() -> None:
    assert membership_advantage(_hand_roc()) == pytest.approx(0.5)
    rng = np.random.default_rng(7)
    member = rng.random(60) < 0.5
    scores = rng.normal(member * 1.0, 1.0)
    brute = max(
        np.mean(scores[member] >= t) - np.mean(scores[~member] >= t) for t in np.r_[scores, np.inf]
    )
    assert membership_advantage(roc_curve(scores, member)) == pytest.approx(brute)


def test_perfect_and_useless_attacks() -> None:
    member = np.r_[np.ones(10, bool), np.zeros(10, bool)]
    perfect = roc_curve(member * 1.0, member)
    assert (auc(perfect), membership_advantage(perfect)) == (1.0, 1.0)
    assert tpr_at_fpr(perfect, (0.0,))[0.0] == 1.0
    flipped = roc_curve(-1.0 * member, member)
    assert (auc(flipped), membership_advantage(flipped)) == (0.0, 0.0)
    constant = roc_curve(np.zeros(20), member)
    assert auc(constant) == 0.5 and membership_advantage(constant) == 0.0


def test_attack_metrics_bundles_everything() -> None:
    m = attack_metrics([10, 9, 5, 3, 8, 4, 2, 1], [1, 1, 1, 1, 0, 0, 0, 0])
    assert m.auc == pytest.approx(auc(_hand_roc()))
    assert m.advantage == pytest.approx(0.5)
    assert m.tpr_at_fpr == {0.01: 0.5, 0.001: 0.5, 0.0: 0.5}
    assert (m.n_members, m.n_nonmembers) == (4, 4)
    d = m.to_dict()
    assert d["tpr_at_fpr_0.01"] == 0.5 and d["tpr_at_fpr_0"] == 0.5 and d["auc"] == m.auc


@pytest.mark.parametrize(
    ("scores", "member", "fragment"),
    [
        ([1.0, 2.0, 3.0], [True, True, True], "both members and non-members"),
        ([1.0, 2.0, 3.0], [0, 0, 0], "both members and non-members"),
        ([1.0, np.nan, 3.0], [1, 0, 1], "finite"),
        ([1.0, np.inf, 3.0], [1, 0, 1], "finite"),
        ([1.0, 2.0, 3.0], [1, 0], "same length"),
        ([[1.0, 2.0]], [1, 0], "1-D"),
        ([], [], "empty"),
        (["a", "b"], [1, 0], "numbers"),
        ([1.0, 2.0], [1, 2], "boolean"),
    ],
)
def test_bad_inputs_raise_deniable_errors(scores: object, member: object, fragment: str) -> None:
    with pytest.raises(DeniableError, match=fragment):
        roc_curve(scores, member)  # type: ignore[arg-type]
    with pytest.raises(DeniableError):
        attack_metrics(scores, member)  # type: ignore[arg-type]


def test_validate_scores_accepts_zero_one_labels() -> None:
    s, m = validate_scores([3, 1], [1.0, 0.0])
    assert s.dtype == np.float64 and m.tolist() == [True, False]


@pytest.mark.parametrize("level", [-0.1, 1.5, float("nan"), True])
def test_bad_fpr_levels(level: float) -> None:
    with pytest.raises(InvalidParameterError, match="fpr_levels"):
        tpr_at_fpr(_hand_roc(), (level,))


def test_doctests() -> None:
    assert doctest.testmod(metrics_module).failed == 0
