"""Certified L2 robustness by randomized smoothing (Cohen, Rosenfeld & Kolter 2019, ICML).

The smoothed classifier ``g(x) = argmax_c P[f(x + η) = c]`` with ``η ~ N(0, σ² I)`` is constant
within L2 radius ``R = σ Φ⁻¹(p_A)`` of ``x`` when the top class has probability at least
``p_A ≥ 1/2`` (their Theorem 1 with ``p_B = 1 − p_A``). ``p_A`` is unknown, so CERTIFY
(their Algorithm, §3.2):

1. draws ``n0`` noisy copies and takes the most frequent class ``ĉ_A`` (selection);
2. draws ``n`` fresh copies and counts ``k`` votes for ``ĉ_A`` (estimation);
3. takes the one-sided Clopper–Pearson lower bound ``p̲_A`` at confidence ``1 − α``;
4. abstains when ``p̲_A ≤ 1/2``, else returns ``ĉ_A`` with radius ``σ Φ⁻¹(p̲_A)``.

With probability at least ``1 − α`` over the noise, a returned class is ``g(x)`` and ``g`` is
robust within the returned radius (the separate selection sample keeps the test valid).
PREDICT abstains unless a two-sided binomial test between the top two counts rejects at ``α``.

For a linear base classifier ``f(x) = [w·x + b > 0]`` everything is exact:
``p_A = Φ(|w·x + b| / (σ‖w‖))`` and ``σΦ⁻¹(p_A)`` is the distance to the decision boundary —
the test suite checks CERTIFY against that closed form.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from numpy.typing import NDArray
from scipy import stats
from torch import nn

from deniable.audit.bounds_binomial import cp_lower
from deniable.data import ArrayDataset
from deniable.errors import (
    DeniableError,
    InvalidParameterError,
    check_count,
    check_positive,
)

ABSTAIN = -1
"""The class a smoothed classifier returns when it abstains."""


def _check_alpha(alpha: float) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not 0 < alpha < 1:
        raise InvalidParameterError("alpha", alpha, "in the open interval (0, 1)")
    return float(alpha)


def certified_radius(count: int, n: int, sigma: float, alpha: float) -> tuple[float, float]:
    """``(p̲_A, R)`` from ``count`` votes for the selected class out of ``n`` noisy draws.

    ``p̲_A`` is the one-sided Clopper–Pearson lower bound at confidence ``1 − alpha``;
    ``R = σ Φ⁻¹(p̲_A)``, or 0 when ``p̲_A ≤ 1/2`` (abstain).

    >>> p, r = certified_radius(990, 1000, 0.5, 0.001)
    >>> round(p, 4), round(r, 4)
    (0.976, 0.989)
    """
    n = check_count("n", n)
    count = check_count("count", count, 0)
    if count > n:
        raise InvalidParameterError("count", count, f"an integer in [0, n={n}]")
    sigma = check_positive("sigma", sigma)
    p_lower = float(cp_lower(count, n, _check_alpha(alpha)))
    if p_lower <= 0.5:
        return p_lower, 0.0
    return p_lower, sigma * float(stats.norm.ppf(p_lower))


@dataclass(frozen=True)
class SmoothingCertificate:
    """CERTIFY's answer for one input: class (or :data:`ABSTAIN`), L2 radius, and its evidence."""

    prediction: int
    radius: float
    p_a_lower: float
    count: int
    n: int
    alpha: float

    @property
    def abstained(self) -> bool:
        """Whether CERTIFY abstained (``p̲_A ≤ 1/2``)."""
        return self.prediction == ABSTAIN

    def to_dict(self) -> dict[str, object]:
        """JSON-ready fields."""
        return {
            "prediction": self.prediction,
            "radius": self.radius,
            "p_a_lower": self.p_a_lower,
            "count": self.count,
            "n": self.n,
            "alpha": self.alpha,
        }


class SmoothedClassifier:
    """``base`` smoothed with isotropic Gaussian noise of standard deviation ``sigma``.

    ``base`` maps a batch ``(m, *feature_shape)`` to logits ``(m, num_classes)``; it is evaluated
    in eval mode without gradients, ``batch_size`` noisy copies at a time.
    """

    def __init__(
        self, base: nn.Module, num_classes: int, sigma: float, *, batch_size: int = 1000
    ) -> None:
        self.base = base
        self.num_classes = check_count("num_classes", num_classes, 2)
        self.sigma = check_positive("sigma", sigma)
        self.batch_size = check_count("batch_size", batch_size)

    def counts(self, x: torch.Tensor, num: int, generator: torch.Generator) -> NDArray[np.int64]:
        """Votes of ``base`` for each class over ``num`` noisy copies of one input ``x``."""
        check_count("num", num)
        out = torch.zeros(self.num_classes, dtype=torch.int64)
        was_training = self.base.training
        self.base.eval()
        try:
            with torch.no_grad():
                for start in range(0, num, self.batch_size):
                    m = min(self.batch_size, num - start)
                    batch = x.unsqueeze(0).expand(m, *x.shape)
                    noise = torch.randn(batch.shape, generator=generator, dtype=x.dtype)
                    votes = self.base(batch + self.sigma * noise).argmax(dim=1)
                    out += torch.bincount(votes, minlength=self.num_classes)
        finally:
            self.base.train(was_training)
        return out.numpy()

    def certify(
        self,
        x: torch.Tensor,
        *,
        n0: int = 100,
        n: int = 100_000,
        alpha: float = 0.001,
        seed: int | torch.Generator = 0,
    ) -> SmoothingCertificate:
        """CERTIFY one input ``x`` (no batch axis): ``n0`` selection and ``n`` estimation draws."""
        generator = _generator(seed)
        selection = self.counts(_single(x), check_count("n0", n0), generator)
        top = int(np.argmax(selection))
        estimate = self.counts(_single(x), check_count("n", n), generator)
        count = int(estimate[top])
        p_lower, radius = certified_radius(count, n, self.sigma, alpha)
        prediction = top if p_lower > 0.5 else ABSTAIN
        return SmoothingCertificate(prediction, radius, p_lower, count, n, float(alpha))

    def predict(
        self,
        x: torch.Tensor,
        *,
        n: int = 1000,
        alpha: float = 0.001,
        seed: int | torch.Generator = 0,
    ) -> int:
        """PREDICT: the top class of ``n`` draws, or :data:`ABSTAIN` unless a two-sided binomial
        test of its count against the runner-up's rejects at level ``alpha``."""
        counts = self.counts(_single(x), check_count("n", n), _generator(seed))
        order = np.argsort(-counts, kind="stable")
        n_a, n_b = int(counts[order[0]]), int(counts[order[1]])
        p_value = stats.binomtest(n_a, n_a + n_b, 0.5).pvalue
        return int(order[0]) if p_value <= _check_alpha(alpha) else ABSTAIN


@dataclass(frozen=True)
class SmoothingReport:
    """CERTIFY on several labelled inputs; :meth:`certified_accuracy` reads the usual curve."""

    sigma: float
    certificates: tuple[SmoothingCertificate, ...]
    labels: tuple[int, ...]

    def certified_accuracy(self, radius: float = 0.0) -> float:
        """Fraction certified correct with radius ≥ ``radius`` (Cohen et al.'s certified
        accuracy at ``radius``; abstentions count as wrong)."""
        hits = [
            c.prediction == y and c.radius >= radius
            for c, y in zip(self.certificates, self.labels, strict=True)
        ]
        return sum(hits) / len(hits)

    def to_dict(self, radii: tuple[float, ...] = (0.0, 0.25, 0.5, 1.0)) -> dict[str, object]:
        """Certified accuracy at each of ``radii``, abstention rate, and the median radius."""
        correct = [
            c.radius
            for c, y in zip(self.certificates, self.labels, strict=True)
            if c.prediction == y
        ]
        return {
            "sigma": self.sigma,
            "n": len(self.labels),
            "abstain_rate": sum(c.abstained for c in self.certificates) / len(self.labels),
            "certified_accuracy": {f"{r:g}": self.certified_accuracy(r) for r in radii},
            "median_radius_correct": float(np.median(correct)) if correct else 0.0,
        }


def certify_dataset(
    smoothed: SmoothedClassifier,
    data: ArrayDataset,
    *,
    n0: int = 100,
    n: int = 10_000,
    alpha: float = 0.001,
    limit: int | None = None,
    seed: int = 0,
) -> SmoothingReport:
    """CERTIFY the first ``limit`` examples of ``data`` (all when ``None``), one generator."""
    x, y = data.to_tensors()
    count = len(y) if limit is None else min(len(y), check_count("limit", limit))
    generator = _generator(seed)
    certs = tuple(
        smoothed.certify(x[i], n0=n0, n=n, alpha=alpha, seed=generator) for i in range(count)
    )
    return SmoothingReport(smoothed.sigma, certs, tuple(int(v) for v in y[:count]))


def train_noise_augmented(
    model: nn.Module,
    data: ArrayDataset,
    *,
    sigma: float,
    epochs: int,
    learning_rate: float,
    seed: int = 0,
    batch_size: int = 256,
) -> nn.Module:
    """Train ``model`` without privacy on ``data`` with N(0, σ²) added to every input (σ = 0:
    no noise): the base classifier randomized smoothing needs (Cohen et al. 2019 train it at the
    smoothing σ). SGD with momentum 0.9, shuffled minibatches; returned in eval mode."""
    optimizer = torch.optim.SGD(model.parameters(), lr=learning_rate, momentum=0.9)
    x, y = data.to_tensors()
    rng = np.random.default_rng(seed)
    generator = torch.Generator().manual_seed(seed + 1)
    model.train()
    for _ in range(check_count("epochs", epochs)):
        order = torch.as_tensor(rng.permutation(len(y)))
        for begin in range(0, len(y), batch_size):
            idx = order[begin : begin + batch_size]
            inputs = x[idx]
            if sigma:
                inputs = inputs + sigma * torch.randn(inputs.shape, generator=generator)
            loss = nn.functional.cross_entropy(model(inputs), y[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    model.eval()
    return model


def _generator(seed: int | torch.Generator) -> torch.Generator:
    if isinstance(seed, torch.Generator):
        return seed
    return torch.Generator().manual_seed(check_count("seed", seed, 0))


def _single(x: torch.Tensor) -> torch.Tensor:
    x = torch.as_tensor(x)
    if x.dim() < 1 or not torch.is_floating_point(x) or not bool(torch.isfinite(x).all()):
        raise DeniableError("certify one input at a time: a finite float tensor without batch axis")
    if math.prod(x.shape) == 0:
        raise DeniableError("the input to certify is empty")
    return x
