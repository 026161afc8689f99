"""PixelDP: certified L2 robustness from a DP noise layer (Lécuyer, Atlidakis, Geambasu, Hsu &
Jana 2019, "Certified robustness to adversarial examples with differential privacy", IEEE S&P).

The network is ``h(g(x) + η)``: a pre-noise part ``g`` whose L2→L2 sensitivity is bounded by
``Δ`` (here one linear layer with spectral norm ≤ 1, so ``Δ = 1``), Gaussian noise ``η`` of
standard deviation ``σ = Δ · L · √(2 ln(1.25/δ)) / ε`` (the Gaussian mechanism, ε ≤ 1), and any
post-processing ``h``. Then the scores ``A(x)`` are (ε, δ)-DP with respect to input changes
``‖α‖₂ ≤ L`` ("construction bound" ``L``), and since ``A_k ∈ [0, 1]`` the expected scores obey
``E[A_k(x)] ≤ e^ε E[A_k(x + α)] + δ`` (their Lemma 1).

**Proposition 1 (robustness condition).** If, for the predicted class ``k``,
``E[A_k(x)] > e^{2ε} max_{i≠k} E[A_i(x)] + (1 + e^ε) δ``, then the prediction
``argmax_i E[A_i(x)]`` is the same for every ``x + α`` with ``‖α‖₂ ≤ L``.
:func:`pixeldp_robust` is this check, on a lower bound of ``E[A_k]`` and an upper bound of the
others. Following the authors' code (``columbia/pixeldp``, ``utils/robustness.py``), ``A`` is the
one-hot argmax of the noisy network, ``E[A]`` is estimated from ``draws`` noisy passes, and the
bounds are one-sided Clopper–Pearson at level ``α/K`` each (Bonferroni over the ``K`` classes), so
the certificate holds with probability at least ``1 − α`` over the draws.

**Certified radius.** ``σ`` is fixed at construction, so the same noise is (ε', δ')-DP for any
``L' = σ ε' / (Δ √(2 ln(1.25/δ')))``. :func:`pixeldp_radius` takes, over a grid of δ' (the
authors' ``0.001, 0.002, …, 0.299``), the largest ε' ≤ 1 for which Proposition 1 holds — in
closed form: with ``t = e^{ε'}`` the condition is ``u t² + δ' t + δ' − l < 0`` — and reports the
largest resulting ``L'``. (The authors bisect over ε'; the root is the same.)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

import numpy as np
import torch
from torch import nn

from deniable.audit.bounds_binomial import cp_lower, cp_upper
from deniable.data import ArrayDataset
from deniable.errors import (
    DeniableError,
    InvalidParameterError,
    check_count,
    check_delta,
    check_positive,
)
from deniable.models.activations import activation as make_activation

DEFAULT_DELTAS: tuple[float, ...] = tuple(round(0.001 * i, 3) for i in range(1, 300))
"""The δ' grid of the authors' code: 0.001 to 0.299 in steps of 0.001."""


def gaussian_multiplier(delta: float) -> float:
    """``√(2 ln(1.25/δ))``: the classic Gaussian mechanism's σ per unit of Δ/ε (ε ≤ 1)."""
    return math.sqrt(2 * math.log(1.25 / check_delta(delta)))


@dataclass(frozen=True)
class PixelDPConstruction:
    """The (L, ε, δ) of a PixelDP network: (ε, δ)-DP against L2 input changes ≤ ``attack_bound``."""

    attack_bound: float
    epsilon: float
    delta: float

    def __post_init__(self) -> None:
        check_positive("attack_bound", self.attack_bound)
        if not 0 < check_positive("epsilon", self.epsilon) <= 1:
            raise InvalidParameterError("epsilon", self.epsilon, "in (0, 1] (Gaussian mechanism)")
        check_delta(self.delta)

    def sigma(self, sensitivity: float = 1.0) -> float:
        """``σ = Δ · L · √(2 ln(1.25/δ)) / ε`` for pre-noise sensitivity ``Δ``."""
        check_positive("sensitivity", sensitivity)
        return sensitivity * self.attack_bound * gaussian_multiplier(self.delta) / self.epsilon


class SpectralNormLinear(nn.Module):
    """A linear layer whose weight is divided by ``max(1, ‖W‖₂)`` in every forward pass.

    So ``‖(W'x + b) − (W'x' + b)‖₂ ≤ ‖x − x'‖₂``: L2→L2 sensitivity at most 1 (the PixelDP "bound"
    scheme; the authors use Parseval projections to the same end). ``‖W‖₂`` is computed exactly
    (largest singular value), which is cheap for the small first layers used here.
    """

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.linear = nn.Linear(
            check_count("in_features", in_features), check_count("out_features", out_features)
        )

    def effective_weight(self) -> torch.Tensor:
        """The weight actually applied (spectral norm ≤ 1)."""
        w = self.linear.weight
        return w / torch.linalg.matrix_norm(w, ord=2).clamp_min(1.0)

    def sensitivity(self) -> float:
        """The L2→L2 sensitivity of this layer: the spectral norm of the effective weight (≤ 1)."""
        with torch.no_grad():
            return float(torch.linalg.matrix_norm(self.effective_weight(), ord=2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(x, self.effective_weight(), self.linear.bias)


class PixelDPNoise(nn.Module):
    """Adds ``N(0, σ²)`` to every coordinate, in training *and* evaluation (PixelDP needs noise at
    prediction time), with ``σ = construction.sigma(sensitivity)``.

    ``sensitivity`` is the caller's bound on the L2→L2 sensitivity of everything before this layer;
    the certificate is only as good as that bound. ``generator`` (optional) seeds the noise.
    """

    def __init__(self, construction: PixelDPConstruction, sensitivity: float = 1.0) -> None:
        super().__init__()
        self.construction = construction
        self.sensitivity = check_positive("sensitivity", sensitivity)
        self.sigma = construction.sigma(self.sensitivity)
        self.generator: torch.Generator | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        noise = torch.randn(x.shape, generator=self.generator, dtype=x.dtype)
        return x + self.sigma * noise


class PixelDPMLP(nn.Module):
    """Flatten → :class:`SpectralNormLinear` → :class:`PixelDPNoise` → activation → MLP → logits."""

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        construction: PixelDPConstruction,
        *,
        hidden: Sequence[int] = (128,),
        activation: str = "relu",
    ) -> None:
        super().__init__()
        widths = [check_count("in_features", in_features), *hidden]
        if len(widths) < 2 or not all(isinstance(w, int) and w >= 1 for w in widths):
            raise InvalidParameterError("hidden", tuple(hidden), "one or more integers >= 1")
        self.first = SpectralNormLinear(widths[0], widths[1])
        self.noise = PixelDPNoise(construction, sensitivity=1.0)
        layers: list[nn.Module] = [make_activation(activation)]
        for fan_in, fan_out in pairwise(widths[1:]):
            layers += [nn.Linear(fan_in, fan_out), make_activation(activation)]
        layers.append(nn.Linear(widths[-1], check_count("num_classes", num_classes, 2)))
        self.head = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.noise(self.first(x.flatten(1))))


def pixeldp_robust(lower: float, upper: float, epsilon: float, delta: float) -> bool:
    """Proposition 1: ``lower > e^{2ε} · upper + (1 + e^ε) · δ``.

    ``lower``: a lower bound on ``E[A_k(x)]`` of the predicted class; ``upper``: an upper bound on
    ``max_{i≠k} E[A_i(x)]``; (ε, δ): the noise layer's guarantee for the attack size in question.

    >>> pixeldp_robust(0.9, 0.05, 0.5, 1e-5), pixeldp_robust(0.6, 0.3, 0.5, 1e-5)
    (True, False)
    """
    return lower > math.exp(2 * epsilon) * upper + (1 + math.exp(epsilon)) * delta


def max_epsilon(lower: float, upper: float, delta: float) -> float:
    """The supremum of ε ≥ 0 with Proposition 1 true at δ (0 when it fails even at ε = 0).

    Solves ``upper·t² + δ·t + δ − lower < 0`` for ``t = e^ε`` (``inf`` when ``upper = δ = 0``).
    """
    for name, v in (("lower", lower), ("upper", upper)):
        if not 0 <= v <= 1:
            raise InvalidParameterError(name, v, "in [0, 1]")
    if upper > 0:
        disc = delta * delta + 4 * upper * (lower - delta)
        t = (-delta + math.sqrt(disc)) / (2 * upper) if disc > 0 else 0.0
    elif delta > 0:
        t = (lower - delta) / delta
    else:
        return math.inf if lower > 0 else 0.0
    return math.log(t) if t > 1 else 0.0


@dataclass(frozen=True)
class PixelDPRadius:
    """The largest certified L2 radius and the (ε', δ') that gives it (radius 0: none)."""

    radius: float
    epsilon: float
    delta: float


def pixeldp_radius(
    lower: float,
    upper: float,
    sigma: float,
    *,
    sensitivity: float = 1.0,
    deltas: Sequence[float] = DEFAULT_DELTAS,
) -> PixelDPRadius:
    """Max over δ' in ``deltas`` of ``L' = σ ε' / (Δ √(2 ln(1.25/δ')))`` with ε' = min(1, sup ε
    satisfying Proposition 1 at δ'). Robust for every attack of L2 size below the radius."""
    check_positive("sigma", sigma)
    check_positive("sensitivity", sensitivity)
    best = PixelDPRadius(0.0, 0.0, 0.0)
    for d in deltas:
        eps = min(1.0, max_epsilon(lower, upper, check_delta(d)))
        radius = sigma * eps / (sensitivity * gaussian_multiplier(d))
        if radius > best.radius:
            best = PixelDPRadius(radius, eps, float(d))
    return best


@dataclass(frozen=True)
class PixelDPCertificate:
    """One input's PixelDP certificate.

    ``robust``: Proposition 1 holds at the construction's (ε, δ), i.e. for attacks up to its
    ``attack_bound``; ``radius``: the largest certified radius over (ε', δ') (see
    :func:`pixeldp_radius`; the grid includes the construction's δ). Both hold with probability
    ≥ ``1 − alpha`` over the draws.
    """

    prediction: int
    lower: float
    upper: float
    robust: bool
    radius: PixelDPRadius
    draws: int
    alpha: float

    def to_dict(self) -> dict[str, object]:
        """JSON-ready fields."""
        return {
            "prediction": self.prediction,
            "lower": self.lower,
            "upper": self.upper,
            "robust": self.robust,
            "radius": self.radius.radius,
            "radius_epsilon": self.radius.epsilon,
            "radius_delta": self.radius.delta,
            "draws": self.draws,
            "alpha": self.alpha,
        }


def noise_layer(model: nn.Module) -> PixelDPNoise:
    """The one :class:`PixelDPNoise` layer of ``model``."""
    layers = [m for m in model.modules() if isinstance(m, PixelDPNoise)]
    if len(layers) != 1:
        raise DeniableError(
            f"a PixelDP model needs exactly one PixelDPNoise layer, found {len(layers)}"
        )
    return layers[0]


def pixeldp_certify(
    model: nn.Module,
    x: torch.Tensor,
    *,
    draws: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
    batch_size: int = 1000,
) -> PixelDPCertificate:
    """Certify one input ``x`` (no batch axis) with ``draws`` noisy passes through ``model``."""
    layer = noise_layer(model)
    check_count("draws", draws)
    if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not 0 < alpha < 1:
        raise InvalidParameterError("alpha", alpha, "in the open interval (0, 1)")
    counts = _votes(
        model, layer, torch.as_tensor(x), draws, seed, check_count("batch_size", batch_size)
    )
    classes = counts.size
    order = np.argsort(-counts, kind="stable")
    lower = float(cp_lower(int(counts[order[0]]), draws, alpha / classes))
    upper = float(cp_upper(int(counts[order[1]]), draws, alpha / classes))
    c = layer.construction
    return PixelDPCertificate(
        prediction=int(order[0]),
        lower=lower,
        upper=upper,
        robust=pixeldp_robust(lower, upper, c.epsilon, c.delta),
        radius=pixeldp_radius(
            lower, upper, layer.sigma, sensitivity=layer.sensitivity, deltas=_grid(c.delta)
        ),
        draws=draws,
        alpha=float(alpha),
    )


def pixeldp_certified_accuracy(
    model: nn.Module,
    data: ArrayDataset,
    *,
    draws: int = 300,
    alpha: float = 0.05,
    limit: int | None = None,
    seed: int = 0,
) -> dict[str, float]:
    """Over the first ``limit`` examples: accuracy of the noisy-argmax prediction, and the
    fraction correct *and* robust at the construction bound ("certified accuracy" at ``L``)."""
    x, y = data.to_tensors()
    count = len(y) if limit is None else min(len(y), check_count("limit", limit))
    certs = [
        pixeldp_certify(model, x[i], draws=draws, alpha=alpha, seed=seed + i) for i in range(count)
    ]
    correct = [c.prediction == int(y[i]) for i, c in enumerate(certs)]
    return {
        "attack_bound": noise_layer(model).construction.attack_bound,
        "accuracy": sum(correct) / count,
        "certified_accuracy": sum(ok and c.robust for ok, c in zip(correct, certs, strict=True))
        / count,
        "robust_rate": sum(c.robust for c in certs) / count,
        "n": float(count),
    }


def _grid(delta: float) -> tuple[float, ...]:
    """The authors' δ' grid plus the construction's δ, so that a certificate robust at the
    construction bound never reports a smaller radius."""
    return tuple(sorted({*DEFAULT_DELTAS, delta}))


def _votes(
    model: nn.Module, layer: PixelDPNoise, x: torch.Tensor, draws: int, seed: int, batch_size: int
) -> np.ndarray:
    was_training = model.training
    model.eval()
    layer.generator = torch.Generator().manual_seed(seed)
    counts: torch.Tensor | None = None
    try:
        with torch.no_grad():
            for start in range(0, draws, batch_size):
                m = min(batch_size, draws - start)
                logits = model(x.unsqueeze(0).expand(m, *x.shape))
                votes = torch.bincount(logits.argmax(dim=1), minlength=logits.shape[1])
                counts = votes if counts is None else counts + votes
    finally:
        layer.generator = None
        model.train(was_training)
    assert counts is not None
    return counts.numpy()
