"""Privacy loss random variables of single mechanisms, for the PLD accountant.

For a dominating pair (P, Q) of one mechanism the privacy loss is L = log(P(o)/Q(o)). The PLD
accountant needs, for one direction of the pair, the survival functions of L under P and under Q:

    sf_p(y) = P(L > y),    sf_q(y) = Q(L > y),

from which δ(ε) = sf_p(ε) − e^ε sf_q(ε) (the hockey-stick divergence) and the discretisation
follow. Two shapes cover every event we support:

- :class:`ContinuousLoss`: L is a monotone function of a Gaussian coordinate (the Gaussian and
  the Poisson-subsampled Gaussian, both directions), with closed-form survival functions and a
  support that covers all but ~1e-33 of the mass (12 standard deviations);
- :class:`AtomLoss`: finitely many loss values with their P-probabilities (randomized response,
  pure ε-DP, Laplace, discrete Laplace, discrete Gaussian, and their Poisson-subsampled forms).

Add/remove-one needs both directions, remove (P = M(D ∪ {x}), Q = M(D)) and add (the reverse);
the accountant takes the worse δ of the two. For Poisson sampling with rate q and base pair (P, Q)
the pair is ((1−q)Q + qP, Q) for remove and (Q, (1−q)Q + qP) for add (Zhu, Dong & Wang 2022,
Thm. 11; Koskela et al. 2020).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import special

TAIL_SD = 12.0  # Gaussian coordinates beyond ±12 σ carry < 2e-33 mass each side.


@dataclass(frozen=True)
class ContinuousLoss:
    """The loss of the (Poisson-subsampled) Gaussian mechanism in one direction.

    In units of the noise, the base pair is P = N(mu, 1), Q = N(0, 1) with mu = Δ/σ; with
    sampling rate q the mixture is M = (1−q)·N(0, 1) + q·N(mu, 1).

    - remove: (M, N(0,1)), L(x) = log(1 − q + q·exp(mu·x − mu²/2)), increasing in x;
    - add: (N(0,1), M), L(x) = −log(1 − q + q·exp(mu·x − mu²/2)), decreasing in x.
    q = 1 gives the plain Gaussian, L ~ N(mu²/2, mu²) under P, in both directions.
    """

    mu: float
    q: float
    remove: bool

    def _loss(self, x: float) -> float:
        mu, q = self.mu, self.q
        z = mu * x - mu * mu / 2
        # log(1 - q + q e^z), stable for tiny q and large |z|.
        value = float(np.logaddexp(math.log1p(-q), math.log(q) + z)) if q < 1 else z
        return value if self.remove else -value

    def support(self) -> tuple[float, float]:
        """(lowest, highest) loss value that carries mass, up to ±TAIL_SD noise units."""
        lo_x, hi_x = -TAIL_SD, self.mu + TAIL_SD
        a, b = self._loss(lo_x), self._loss(hi_x)
        return (min(a, b), max(a, b))

    def _threshold(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """x(y) where L crosses y, and a mask of the y for which a crossing exists."""
        mu, q = self.mu, self.q
        s = y if self.remove else -y
        # 1 - q + q e^z = e^s  <=>  z = log((e^s - (1 - q)) / q)
        if q < 1:
            with np.errstate(divide="ignore", invalid="ignore"):
                log_num = s + np.log(-np.expm1(np.log1p(-q) - s))  # log(e^s - (1-q))
            exists = s > math.log1p(-q)
            z = np.where(exists, log_num - math.log(q), 0.0)
        else:
            exists = np.ones_like(y, dtype=bool)
            z = s
        return (z + mu * mu / 2) / mu, exists

    def survival(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(P(L > y), Q(L > y)) for an array of loss values y."""
        y = np.asarray(y, dtype=float)
        x, exists = self._threshold(y)
        mu, q = self.mu, self.q
        if self.remove:
            # L > y  <=>  X > x;  P = mixture, Q = N(0, 1).
            sf_q = special.ndtr(-x)
            sf_p = (1 - q) * sf_q + q * special.ndtr(mu - x)
            sf_p = np.where(exists, sf_p, 1.0)
            sf_q = np.where(exists, sf_q, 1.0)
        else:
            # L > y  <=>  X < x;  P = N(0, 1), Q = mixture.
            sf_p = special.ndtr(x)
            sf_q = (1 - q) * sf_p + q * special.ndtr(x - mu)
            sf_p = np.where(exists, sf_p, 0.0)
            sf_q = np.where(exists, sf_q, 0.0)
        return sf_p, sf_q


@dataclass(frozen=True)
class AtomLoss:
    """A loss that takes finitely many values ``losses`` with P-probabilities ``probs``.

    The Q-probability of each atom is probs·exp(−losses). ``infinity_mass`` is P-mass where Q
    has none (loss +∞).
    """

    losses: np.ndarray
    probs: np.ndarray
    infinity_mass: float = 0.0

    def reversed(self) -> AtomLoss:
        """The other direction: (Q, P) has losses −L with Q-probabilities."""
        q_probs = self.probs * np.exp(-self.losses)
        return AtomLoss(-self.losses, q_probs, max(0.0, 1.0 - float(q_probs.sum())))

    def poisson_sampled(self, q: float, remove: bool) -> AtomLoss:
        """Poisson subsampling at rate q of this (remove-direction) pair; see module docstring."""
        q_probs = self.probs * np.exp(-self.losses)
        if q == 1:
            return self if remove else self.reversed()
        # Q-mass where P has none (loss −∞ in the base pair): under the mixture its loss is
        # log(1 − q) (remove) or −log(1 − q) (add).
        rest = max(0.0, 1.0 - float(q_probs.sum()))
        mixed = np.logaddexp(math.log1p(-q), math.log(q) + self.losses)
        losses = np.concatenate([mixed, [math.log1p(-q)]])
        if remove:
            probs = np.concatenate([(1 - q) * q_probs + q * self.probs, [(1 - q) * rest]])
            return AtomLoss(losses, probs, q * self.infinity_mass)
        return AtomLoss(-losses, np.concatenate([q_probs, [rest]]))


def randomized_response(epsilon: float, k: int) -> AtomLoss:
    """k-ary RR: P = (p, r, …, r), Q = (r, p, r, …) with p = e^ε/(e^ε+k−1), r = 1/(e^ε+k−1)."""
    denom = math.exp(epsilon) + k - 1
    p, r = math.exp(epsilon) / denom, 1.0 / denom
    losses = np.array([epsilon, -epsilon, 0.0])
    probs = np.array([p, r, (k - 2) * r])
    return AtomLoss(losses, probs)


def laplace(epsilon: float, atoms: int = 20001) -> AtomLoss:
    """Laplace mechanism with ε = Δ/b: P = Lap(0, b), Q = Lap(Δ, b).

    L = ε at x ≤ 0 (P-mass 1/2), −ε at x ≥ Δ (P-mass e^{−ε}/2), and (ε/Δ)(Δ − 2x) in between.
    The middle part is represented by ``atoms`` atoms, each placed at the *upper* end of its
    slice of loss values (rounding the loss up is pessimistic), so the result dominates the
    exact Laplace PLD.
    """
    # In the middle, x in (0, Δ) with Δ = 1 and b = 1/ε; slice the loss range [-ε, ε].
    edges = np.linspace(-epsilon, epsilon, atoms + 1)
    # L <= y  <=>  x >= (1 - y/ε)/2; P(X >= t) = e^{-t ε}/2 for t >= 0.
    t = (1 - edges / epsilon) / 2
    cdf = 0.5 * np.exp(-t * epsilon)  # P(L <= edge) within the middle part
    middle = np.diff(cdf)
    losses = np.concatenate([[epsilon, -epsilon], edges[1:]])
    probs = np.concatenate([[0.5, 0.5 * math.exp(-epsilon)], middle])
    return AtomLoss(losses, probs)


def discrete_laplace(scale: float, sensitivity: int) -> AtomLoss:
    """Discrete Laplace P(x) ∝ exp(−|x|/t), shift Δ: L(x) = (|x − Δ| − |x|)/t (exact, finite)."""
    t, d = scale, sensitivity
    a = math.exp(-1.0 / t)
    norm = (1 - a) / (1 + a)
    inner = np.arange(1, d)  # 0 < x < Δ
    losses = np.concatenate([[d / t, -d / t], (d - 2 * inner) / t])
    # P(X <= 0) = norm·(1/(1-a)), P(X >= Δ) = norm·a^Δ/(1-a).
    probs = np.concatenate(
        [[norm / (1 - a), norm * a**d / (1 - a)], norm * a ** inner.astype(float)]
    )
    return AtomLoss(losses, probs)


def discrete_gaussian(sigma: float, sensitivity: int) -> AtomLoss:
    """Discrete Gaussian N_Z(0, σ²) vs N_Z(Δ, σ²): L(x) = (Δ² − 2Δx)/(2σ²) under P = N_Z(0, σ²),
    summed exactly over |x| ≤ 40σ + Δ (the rest has mass < 1e-340)."""
    bound = math.ceil(40 * sigma) + int(sensitivity) + 1
    x = np.arange(-bound, bound + 1, dtype=float)
    log_w = -(x**2) / (2 * sigma**2)
    probs = np.exp(log_w - special.logsumexp(log_w))
    losses = (sensitivity**2 - 2 * sensitivity * x) / (2 * sigma**2)
    keep = probs > 0
    return AtomLoss(losses[keep], probs[keep])
