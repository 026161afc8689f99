"""Output perturbation for L2-regularised logistic regression (Chaudhuri, Monteleoni & Sarwate
2011, "Differentially private empirical risk minimization", JMLR, Alg. 1): a convex baseline.

The model is the exact minimiser of J(w) = (1/n) Σ_i ℓ(w; x_i, y_i) + (λ/2)‖w‖², with every
record projected onto the unit ball (x ← x / max(1, ‖x‖), a per-record map). Binary labels use
the logistic loss log(1 + e^{−y·wᵀx}) (y = ±1), whose gradient has norm ≤ ‖x‖ ≤ 1 (L = 1);
k > 2 classes use the softmax cross-entropy on W ∈ R^{k×d}, whose gradient (p − e_y)xᵀ has
Frobenius norm ≤ √2 (L = √2).

Sensitivity of the minimiser (Chaudhuri et al. 2011, Corollary 8 and its Lemma 7: if G is
Λ-strongly convex, ‖argmin G − argmin (G + g)‖ ≤ ‖∇g‖/Λ at the second minimiser):

- replace-one (their relation; n fixed): g = ℓ_new − ℓ_old, Λ = nλ: Δ = 2L/(nλ);
- add/remove-one: the larger dataset's objective is the smaller's (size m, Λ = mλ) plus
  g = ℓ_new + (λ/2)‖w‖², and ‖∇g‖ ≤ L + λ‖w‖ ≤ 2L at the larger's minimiser (‖w‖ ≤ L/λ there):
  Δ = 2L/((n − 1)λ) for a dataset of n.

The solver's minimiser is inexact: it must reach ‖∇J‖ ≤ ``GRADIENT_TOLERANCE`` (τ) or the fit is
refused, and ‖w − w*‖ ≤ τ/λ by strong convexity, so 2τ/λ is added to both sensitivities.

Noise, one function each:

- :func:`output_perturbation`: Chaudhuri et al.'s noise with density ∝ exp(−‖b‖/s) (uniform
  direction, ‖b‖ ~ Gamma(dim, s)), s = Δ/ε with the add/remove Δ (the larger), so the release is
  ε-DP under both relations; event ``PureDpEvent(ε)``.
- :func:`output_perturbation_gaussian`: N(0, σ²) per coordinate with σ the analytic Gaussian's
  (Balle & Wang 2018) for (ε, δ) at the add/remove Δ; event ``GaussianEvent(σ, Δ_add/remove,
  replace_one_sensitivity=Δ_replace)``.

Floating-point noise (not protected against Mironov 2012's attack on low-order bits).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import optimize, special
from threadpoolctl import threadpool_limits  # a dependency of scikit-learn

from deniable.errors import DeniableError, InvalidParameterError, check_delta, check_positive
from deniable.events import GaussianEvent, Neighbouring, PrivacyEvent, PureDpEvent
from deniable.mechanisms import RandomSource, analytic_sigma
from deniable.mechanisms._inputs import float_values, source
from deniable.placements.guarantee import Guarantee, PrivacyClaim, claim

GRADIENT_TOLERANCE = 1e-7
Detail = float | int | str


@dataclass(frozen=True)
class Sensitivity:
    """L2 sensitivity of the regularised minimiser under each relation (solver slack included)."""

    add_remove: float
    replace_one: float
    lipschitz: float


@dataclass(frozen=True, eq=False)
class ConvexRelease:
    """Released weights: shape (d,) for binary (logit = wᵀx), (k, d) for k > 2 classes."""

    weights: NDArray[np.float64]
    event: PrivacyEvent
    secure: bool
    mechanism: str
    sensitivity: Sensitivity
    guarantee: Guarantee = Guarantee.CENTRAL_DP
    details: dict[str, Detail] = field(default_factory=dict)

    def predict(self, features: ArrayLike) -> NDArray[np.int64]:
        """Predicted classes for ``features`` (projected onto the unit ball as in training)."""
        x = unit_ball(features)
        if self.weights.ndim == 1:
            return (x @ self.weights > 0).astype(np.int64)
        return np.argmax(x @ self.weights.T, axis=1).astype(np.int64)

    def epsilon(
        self,
        delta: float,
        *,
        accountant: str = "pld",
        relation: Neighbouring = Neighbouring.ADD_REMOVE,
    ) -> PrivacyClaim:
        return claim(
            self.event,
            delta,
            guarantee=self.guarantee,
            unit="example",
            accountant=accountant,
            relation=relation,
        )


def unit_ball(features: ArrayLike) -> NDArray[np.float64]:
    """Records as (n, d) rows, each scaled to norm ≤ 1 (x / max(1, ‖x‖))."""
    x = float_values("features", features)
    if x.ndim < 2:
        raise InvalidParameterError("features", x.shape, "(records, *feature_shape)")
    flat = x.reshape(x.shape[0], -1)
    norms = np.linalg.norm(flat, axis=1, keepdims=True)
    return np.asarray(flat / np.maximum(norms, 1.0))


def fit_logistic_regression(
    features: ArrayLike, labels: ArrayLike, *, num_classes: int, regularization: float
) -> tuple[NDArray[np.float64], float]:
    """The non-private minimiser of J (see the module docstring) and ‖∇J‖ there."""
    lam = check_positive("regularization", regularization)
    x = unit_ball(features)
    y = np.asarray(labels)
    if (
        y.shape != (x.shape[0],)
        or y.dtype.kind not in "iu"
        or y.min() < 0
        or y.max() >= num_classes
    ):
        raise InvalidParameterError(
            "labels", getattr(y, "shape", y), f"n integers in 0..{num_classes - 1}"
        )
    n, d = x.shape
    if num_classes == 2:
        s = 2.0 * y - 1.0

        def objective(w: NDArray[np.float64]) -> tuple[float, NDArray[np.float64]]:
            margin = s * (x @ w)
            loss = np.logaddexp(0.0, -margin).mean() + 0.5 * lam * w @ w
            coef = -s * special.expit(-margin)
            return float(loss), x.T @ coef / n + lam * w

        shape: tuple[int, ...] = (d,)
    else:
        onehot = np.eye(num_classes)[y]

        def objective(w: NDArray[np.float64]) -> tuple[float, NDArray[np.float64]]:
            weights = w.reshape(num_classes, d)
            logits = x @ weights.T
            logz = special.logsumexp(logits, axis=1)
            loss = (logz - logits[np.arange(n), y]).mean() + 0.5 * lam * w @ w
            p = np.exp(logits - logz[:, None])
            grad = (p - onehot).T @ x / n + lam * weights
            return float(loss), grad.ravel()

        shape = (num_classes, d)
    w0 = np.zeros(int(np.prod(shape)))
    # One BLAS thread: L-BFGS-B's small vector operations ran 15-25x slower with OpenBLAS's
    # thread pool on a busy 2-core machine (digits: 1.0 s vs 0.06 s).
    with threadpool_limits(limits=1):
        result = optimize.minimize(
            objective,
            w0,
            jac=True,
            method="L-BFGS-B",
            options={"maxiter": 20000, "gtol": GRADIENT_TOLERANCE / 10, "ftol": 0.0},
        )
    w = np.asarray(result.x)
    grad_norm = float(np.linalg.norm(objective(w)[1]))
    return w.reshape(shape), grad_norm


def minimiser_sensitivity(n: int, num_classes: int, regularization: float) -> Sensitivity:
    """Δ of the exact minimiser plus the solver slack 2τ/λ, for n records."""
    lam = check_positive("regularization", regularization)
    if n < 2:
        raise InvalidParameterError("records", n, ">= 2")
    lipschitz = 1.0 if num_classes == 2 else math.sqrt(2.0)
    slack = 2.0 * GRADIENT_TOLERANCE / lam
    return Sensitivity(
        add_remove=2.0 * lipschitz / ((n - 1) * lam) + slack,
        replace_one=2.0 * lipschitz / (n * lam) + slack,
        lipschitz=lipschitz,
    )


def output_perturbation(
    features: ArrayLike,
    labels: ArrayLike,
    *,
    num_classes: int,
    regularization: float,
    epsilon: float,
    rng: RandomSource | None = None,
) -> ConvexRelease:
    """ε-DP logistic regression by Chaudhuri et al.'s output perturbation (Alg. 1)."""
    eps = check_positive("epsilon", epsilon)
    w, sens, grad_norm = _fit(features, labels, num_classes, regularization)
    src = source(rng)
    scale = sens.add_remove / eps
    dim = w.size
    direction = _standard_normal(src, dim)
    direction /= np.linalg.norm(direction)
    # ‖b‖ ~ Gamma(dim, scale): a sum of dim exponentials, −scale·Σ log U with U in (0, 1]
    radius = -scale * float(np.sum(np.log1p(-src.uniform_array(dim))))
    noisy = w + (radius * direction).reshape(w.shape)
    return ConvexRelease(
        weights=noisy,
        event=PureDpEvent(epsilon=eps),
        secure=src.is_secure,
        mechanism="output_perturbation",
        sensitivity=sens,
        details=_details(w, regularization, grad_norm, {"noise_scale": scale, "epsilon": eps}),
    )


def output_perturbation_gaussian(
    features: ArrayLike,
    labels: ArrayLike,
    *,
    num_classes: int,
    regularization: float,
    epsilon: float,
    delta: float,
    rng: RandomSource | None = None,
) -> ConvexRelease:
    """(ε, δ)-DP logistic regression: the minimiser plus N(0, σ²) per coordinate."""
    eps = check_positive("epsilon", epsilon)
    dlt = check_delta(delta)
    w, sens, grad_norm = _fit(features, labels, num_classes, regularization)
    src = source(rng)
    sigma = analytic_sigma(epsilon=eps, delta=dlt, sensitivity=sens.add_remove)
    noisy = w + sigma * _standard_normal(src, w.size).reshape(w.shape)
    event = GaussianEvent(
        sigma=sigma, sensitivity=sens.add_remove, replace_one_sensitivity=sens.replace_one
    )
    extra: dict[str, Detail] = {"sigma": sigma, "epsilon": eps, "delta": dlt}
    return ConvexRelease(
        weights=noisy,
        event=event,
        secure=src.is_secure,
        mechanism="output_perturbation_gaussian",
        sensitivity=sens,
        details=_details(w, regularization, grad_norm, extra),
    )


def _fit(
    features: ArrayLike, labels: ArrayLike, num_classes: int, regularization: float
) -> tuple[NDArray[np.float64], Sensitivity, float]:
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise InvalidParameterError("num_classes", num_classes, "an integer >= 2")
    w, grad_norm = fit_logistic_regression(
        features, labels, num_classes=num_classes, regularization=regularization
    )
    if not grad_norm <= GRADIENT_TOLERANCE:
        raise DeniableError(
            f"the logistic-regression solver stopped at gradient norm {grad_norm:.3g} > "
            f"{GRADIENT_TOLERANCE:g}; increase regularization so the sensitivity bound holds"
        )
    n = int(np.asarray(labels).shape[0])
    return w, minimiser_sensitivity(n, num_classes, regularization), grad_norm


def _details(
    w: NDArray[np.float64], regularization: float, grad_norm: float, extra: dict[str, Detail]
) -> dict[str, Detail]:
    return {
        **extra,
        "regularization": float(regularization),
        "dimension": int(w.size),
        "solver_gradient_norm": grad_norm,
    }


def _standard_normal(src: RandomSource, n: int) -> NDArray[np.float64]:
    """n standard normals by Box–Muller from ``src``'s uniforms."""
    u1 = 1.0 - src.uniform_array(n)  # (0, 1]
    u2 = src.uniform_array(n)
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * math.pi * u2)
