"""Label DP: randomized response on labels and RR-with-prior (Ghazi et al. 2021)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats

from deniable.accounting import rdp
from deniable.data import load_digits
from deniable.events import NoOpEvent, RandomizedResponseEvent
from deniable.mechanisms import RandomSource
from deniable.placements import (
    Fit,
    Guarantee,
    best_top_k,
    randomize_labels,
    rr_with_prior,
    train_label_dp,
)

ALPHA = 1e-3  # each goodness-of-fit test below wrongly fails with probability 0.1 %


@pytest.mark.parametrize(("epsilon", "k"), [(0.5, 10), (2.0, 10), (1.0, 3)])
def test_randomized_labels_follow_the_keep_probability(epsilon: float, k: int) -> None:
    n = 20000
    labels = np.full(n, 1, dtype=np.int64)
    out = randomize_labels(labels, num_classes=k, epsilon=epsilon, rng=RandomSource(7))
    keep = math.exp(epsilon) / (math.exp(epsilon) + k - 1)
    expected = np.full(k, n * (1 - keep) / (k - 1))
    expected[1] = n * keep
    observed = np.bincount(out.labels, minlength=k)
    assert stats.chisquare(observed, expected).pvalue > ALPHA
    assert out.event == RandomizedResponseEvent(epsilon, k)
    assert out.guarantee is Guarantee.LABEL_DP


def test_label_dp_claim_round_trips_and_says_label_dp() -> None:
    out = randomize_labels(np.arange(10) % 4, num_classes=4, epsilon=1.5, rng=RandomSource(0))
    for name in ("basic", "rdp"):
        claim = out.epsilon(1e-6, accountant=name)
        assert claim.epsilon == pytest.approx(1.5, rel=1e-9)
        assert claim.to_dict()["guarantee"] == "label-dp"
        assert claim.to_dict()["relation"] == "replace_one"
    assert out.epsilon(1e-6).epsilon == pytest.approx(1.5, abs=1e-3)  # pld


def test_best_top_k_matches_brute_force() -> None:
    rng = np.random.default_rng(0)
    priors = rng.dirichlet(np.ones(6) * 0.5, size=300)
    for eps in (0.3, 1.0, 3.0):
        order, k = best_top_k(priors, eps)
        for row, p in enumerate(priors):
            best = max(
                range(1, 7),
                key=lambda kk: (
                    np.sort(p)[::-1][:kk].sum() * math.exp(eps) / (math.exp(eps) + kk - 1)
                ),
            )
            assert k[row] == best
            assert set(order[row, : k[row]]) == set(np.argsort(-p)[: k[row]])


def test_rr_with_prior_distribution_inside_and_outside_the_top_set() -> None:
    n, eps = 30000, 1.0
    prior = np.array([0.45, 0.4, 0.1, 0.05, 0.0])  # e=2.72: top-2 wins (0.85·0.73 > others)
    _, k = best_top_k(prior[None, :], eps)
    assert k[0] == 2
    priors = np.tile(prior, (n, 1))
    inside = rr_with_prior(np.full(n, 1), priors, epsilon=eps, rng=RandomSource(1))
    keep = math.exp(eps) / (math.exp(eps) + 1)
    counts = np.bincount(inside.labels, minlength=5)
    assert counts[2:].sum() == 0
    assert stats.chisquare(counts[:2], [n * (1 - keep), n * keep]).pvalue > ALPHA
    outside = rr_with_prior(np.full(n, 3), priors, epsilon=eps, rng=RandomSource(2))
    counts = np.bincount(outside.labels, minlength=5)
    assert counts[2:].sum() == 0
    assert stats.chisquare(counts[:2], [n / 2, n / 2]).pvalue > ALPHA
    assert inside.event == RandomizedResponseEvent(eps, 2)


def test_rr_with_prior_uniform_prior_is_plain_rr_and_certain_prior_reveals_nothing() -> None:
    labels = np.arange(100) % 10
    uniform = rr_with_prior(labels, np.ones((100, 10)), epsilon=1.0, rng=RandomSource(0))
    assert uniform.event == RandomizedResponseEvent(1.0, 10)
    certain = rr_with_prior(labels, np.eye(10)[np.zeros(100, dtype=int)], epsilon=1.0)
    assert certain.event == NoOpEvent()
    assert np.all(certain.labels == 0)


def test_rr_with_prior_event_dominates_every_pair_of_labels() -> None:
    # brute force: the report's distributions for any two true labels are within RR(ε, k)'s
    # Rényi divergence (the event's curve), at every order
    eps, prior = 1.2, np.array([0.3, 0.3, 0.2, 0.1, 0.1])
    _, k = best_top_k(prior[None, :], eps)
    size = int(k[0])
    keep = math.exp(eps) / (math.exp(eps) + size - 1)
    top = list(np.argsort(-prior, kind="stable")[:size])
    orders = np.array([1.5, 2.0, 4.0, 16.0])
    curve = rdp.compute_rdp(RandomizedResponseEvent(eps, size), orders)

    def report(y: int) -> np.ndarray:
        if y in top:
            return np.array([keep if c == y else (1 - keep) / (size - 1) for c in top])
        return np.full(size, 1 / size)

    for y, z in itertools.permutations(range(5), 2):
        p, q = report(y), report(z)
        for order, bound in zip(orders, curve, strict=True):
            div = math.log(np.sum(p**order * q ** (1 - order))) / (order - 1)
            assert div <= bound + 1e-12


def test_rr_with_prior_training_keeps_more_true_labels_than_plain_rr() -> None:
    split = load_digits(seed=0)
    eps = 1.0
    run = train_label_dp(
        split.train,
        epsilon=eps,
        stage_fractions=(0.4, 0.6),
        fit=Fit(epochs=30, learning_rate=0.2, batch_size=256),
        rng=RandomSource(3),
    )
    second = run.stage == 1
    truth = split.train.labels[second]
    kept_prior = float(np.mean(run.noisy_labels[second] == truth))
    plain = randomize_labels(truth, num_classes=10, epsilon=eps, rng=RandomSource(4))
    kept_plain = float(np.mean(plain.labels == truth))
    # plain RR keeps e/(e+9) = 0.232; over ~860 labels its sd is 0.014, so the 0.1 margin is
    # > 7 sd for plain RR alone
    assert kept_prior > kept_plain + 0.1
    assert run.guarantee is Guarantee.LABEL_DP
    claim = run.epsilon(1e-6, accountant="basic")
    assert claim.epsilon == pytest.approx(eps)  # parallel composition: max over stages
    assert claim.to_dict()["guarantee"] == "label-dp"
    assert np.all(run.noisy_labels >= 0)
