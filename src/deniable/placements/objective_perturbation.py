"""Objective perturbation for L2-regularised logistic regression (Chaudhuri, Monteleoni & Sarwate
2011, "Differentially private empirical risk minimization", JMLR, Algorithm 2): a random linear
term is added to the objective before it is minimised, instead of noise to the minimiser
(:mod:`~deniable.placements.output_perturbation`).

Binary model (labels 0/1 as y = ±1, logit wᵀx), every record x with ‖x‖ ≤ 1 (checked, not
projected: a record outside the unit ball is refused). With the logistic loss
ℓ(w; x, y) = log(1 + e^{−y·wᵀx}), |ℓ'| ≤ 1 and 0 ≤ ℓ'' ≤ c = 1/4. The release is

    w = argmin_w  Σ_i ℓ(w; x_i, y_i) + ((Λ + Δ)/2)·‖w‖² + bᵀw,

Λ = ``total_regularization`` (the weight on ‖w‖²/2 next to the *sum* of the losses: n·λ for the
λ of output_perturbation's mean objective, scikit-learn's 1/C), and b drawn with density
∝ exp(−ε'‖b‖/2) (uniform direction, ‖b‖ ~ Gamma(d, 2/ε')). Divided by n this is Chaudhuri et
al.'s J(w) + bᵀw/n + (Δ/2)‖w‖² with their nΛ = our Λ, and their Algorithm 2 sets

    ε' = ε − log(1 + 2c/Λ + c²/Λ²);  if ε' ≤ 0:  Δ = c/(e^{ε/4} − 1) − Λ  and  ε' = ε/2
    (else Δ = 0),

which is ε-DP for datasets that differ in one record (their Theorem 9; replace-one).

Add/remove one record, with Λ fixed (not scaled by n, which is why the regulariser is stated as a
total): the minimiser determines b = −∇G_D(w), G_D = Σ_i ℓ_i + ((Λ + Δ)/2)‖·‖², and the density of
w is ν(b_D(w))·det ∇²G_D(w). Adding a record z moves b by ∇ℓ_z(w) (norm ≤ 1, a factor e^{ε'/2})
and multiplies the determinant by 1 + ℓ''_z·x_zᵀ(∇²G_D)⁻¹x_z ∈ [1, 1 + c/(Λ + Δ)], so the release
is (ε'/2 + log(1 + c/(Λ + Δ)))-DP = (ε/2)-DP in both branches. The event is ``PureDpEvent(ε)``,
which holds under both relations (ε/2 under add/remove is recorded in ``details``).

k > 2 classes: one-vs-rest, k binary models each released with ε/k (basic composition: ε in
all), weights of shape (k, d), predicted class argmax_c w_cᵀx.

The guarantee is for the exact minimiser; the solver must reach ‖∇(objective/n)‖ ≤
``GRADIENT_TOLERANCE`` or the fit is refused (Iyengar et al. 2019's approximate minima
perturbation would add output noise to cover the residual; not implemented). Only the pure-ε
variant is implemented (not the Gaussian one of Kifer, Smith & Thakurta 2012). Floating-point
noise (not protected against Mironov 2012's attack on low-order bits).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import optimize, special
from threadpoolctl import threadpool_limits  # a dependency of scikit-learn

from deniable.errors import DeniableError, InvalidParameterError, check_positive
from deniable.events import PureDpEvent
from deniable.mechanisms import RandomSource
from deniable.mechanisms._inputs import float_values, source
from deniable.placements.output_perturbation import (
    GRADIENT_TOLERANCE,
    ConvexRelease,
    Detail,
    Sensitivity,
    _standard_normal,
    unit_ball,
)

SMOOTHNESS = 0.25  # c: the logistic loss has 0 <= ℓ'' <= 1/4
UNIT_BALL_SLACK = 1e-9  # records with 1 < ‖x‖ <= 1 + slack (rounding) are scaled onto the ball


@dataclass(frozen=True)
class ObjectiveNoise:
    """Algorithm 2's parameters for a target ``epsilon`` (per binary model)."""

    epsilon: float
    epsilon_prime: float  # ε': the noise density is ∝ exp(−ε'‖b‖/2)
    extra_regularization: float  # Δ, added to Λ
    total_regularization: float  # Λ
    smoothness: float  # c

    @property
    def noise_scale(self) -> float:
        """The Gamma scale of ‖b‖, 2/ε'."""
        return 2.0 / self.epsilon_prime

    @property
    def add_remove_epsilon(self) -> float:
        """ε'/2 + log(1 + c/(Λ + Δ)): the guarantee under add/remove (at most ε/2)."""
        reg = self.total_regularization + self.extra_regularization
        return 0.5 * self.epsilon_prime + math.log1p(self.smoothness / reg)


def objective_noise_parameters(
    epsilon: float, total_regularization: float, smoothness: float = SMOOTHNESS
) -> ObjectiveNoise:
    """ε' and Δ of Chaudhuri et al.'s Algorithm 2 (module docstring), with nΛ = Λ."""
    eps = check_positive("epsilon", epsilon)
    lam = check_positive("total_regularization", total_regularization)
    c = check_positive("smoothness", smoothness)
    eps_prime = eps - math.log(1.0 + 2.0 * c / lam + (c / lam) ** 2)
    extra = 0.0
    if eps_prime <= 0:
        extra = c / math.expm1(eps / 4.0) - lam
        eps_prime = eps / 2.0
    return ObjectiveNoise(eps, eps_prime, extra, lam, c)


def objective_noise(dimension: int, epsilon_prime: float, rng: RandomSource) -> NDArray[np.float64]:
    """b with density ∝ exp(−ε'‖b‖/2) on R^dimension: a uniform direction (normalised Gaussian)
    times a Gamma(dimension, 2/ε') radius (a sum of exponentials, −scale·Σ log U)."""
    scale = 2.0 / check_positive("epsilon_prime", epsilon_prime)
    direction = _standard_normal(rng, dimension)
    direction /= np.linalg.norm(direction)
    radius = -scale * float(np.sum(np.log1p(-rng.uniform_array(dimension))))
    return np.asarray(radius * direction)


def perturbed_logistic_regression(
    features: ArrayLike, labels: ArrayLike, noise: ArrayLike, regularization: float
) -> tuple[NDArray[np.float64], float]:
    """argmin_w Σ_i log(1 + e^{−y_i wᵀx_i}) + (``regularization``/2)‖w‖² + ``noise``ᵀw for 0/1
    ``labels`` (y = 2·label − 1), and the norm of the gradient of that objective / n there.
    Features are used as given (no projection)."""
    x = float_values("features", features)
    y = np.asarray(labels)
    b = float_values("noise", noise)
    reg = check_positive("regularization", regularization)
    if x.ndim != 2 or y.shape != (x.shape[0],) or b.shape != (x.shape[1],):
        raise InvalidParameterError(
            "features, labels, noise", (x.shape, y.shape, b.shape), "shapes (n, d), (n,), (d,)"
        )
    n = x.shape[0]
    s = 2.0 * y - 1.0

    def objective(w: NDArray[np.float64]) -> tuple[float, NDArray[np.float64]]:
        margin = s * (x @ w)
        value = np.logaddexp(0.0, -margin).sum() + 0.5 * reg * w @ w + b @ w
        grad = x.T @ (-s * special.expit(-margin)) + reg * w + b
        return float(value) / n, grad / n

    with threadpool_limits(limits=1):  # see fit_logistic_regression
        result = optimize.minimize(
            objective,
            np.zeros(x.shape[1]),
            jac=True,
            method="L-BFGS-B",
            options={"maxiter": 20000, "gtol": GRADIENT_TOLERANCE / 10, "ftol": 0.0},
        )
    w = np.asarray(result.x)
    return w, float(np.linalg.norm(objective(w)[1]))


def objective_perturbation(
    features: ArrayLike,
    labels: ArrayLike,
    *,
    num_classes: int,
    total_regularization: float,
    epsilon: float,
    rng: RandomSource | None = None,
) -> ConvexRelease:
    """ε-DP logistic regression by objective perturbation (module docstring): binary for
    ``num_classes`` = 2, one-vs-rest with ε/k per class otherwise."""
    eps = check_positive("epsilon", epsilon)
    lam = check_positive("total_regularization", total_regularization)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise InvalidParameterError("num_classes", num_classes, "an integer >= 2")
    x = _records(features)
    y = _labels(labels, x.shape[0], num_classes)
    models = 1 if num_classes == 2 else num_classes
    params = objective_noise_parameters(eps / models, lam)
    src = source(rng)
    weights = np.empty((models, x.shape[1]))
    worst = 0.0
    for c in range(models):
        target = y if num_classes == 2 else (y == c).astype(np.int64)
        b = objective_noise(x.shape[1], params.epsilon_prime, src)
        reg = lam + params.extra_regularization
        weights[c], grad_norm = perturbed_logistic_regression(x, target, b, reg)
        if not grad_norm <= GRADIENT_TOLERANCE:
            raise DeniableError(
                f"the perturbed objective's solver stopped at gradient norm {grad_norm:.3g} > "
                f"{GRADIENT_TOLERANCE:g}; increase total_regularization"
            )
        worst = max(worst, grad_norm)
    details: dict[str, Detail] = {
        "epsilon": eps,
        "epsilon_per_model": params.epsilon,
        "epsilon_prime": params.epsilon_prime,
        "noise_scale": params.noise_scale,
        "total_regularization": lam,
        "extra_regularization": params.extra_regularization,
        "smoothness": params.smoothness,
        "add_remove_epsilon": models * params.add_remove_epsilon,
        "models": models,
        "dimension": int(weights.size),
        "solver_gradient_norm": worst,
    }
    return ConvexRelease(
        weights=weights[0] if num_classes == 2 else weights,
        event=PureDpEvent(epsilon=eps),
        secure=src.is_secure,
        mechanism="objective_perturbation",
        # what one record moves: the objective's gradient (the linear term's b), by ‖∇ℓ‖ <= 1
        sensitivity=Sensitivity(add_remove=1.0, replace_one=2.0, lipschitz=1.0),
        details=details,
    )


def _records(features: ArrayLike) -> NDArray[np.float64]:
    x = float_values("features", features)
    if x.ndim < 2 or x.shape[0] < 1:
        raise InvalidParameterError("features", x.shape, "(records >= 1, *feature_shape)")
    norms = np.linalg.norm(x.reshape(x.shape[0], -1), axis=1)
    worst = int(np.argmax(norms))
    if norms[worst] > 1.0 + UNIT_BALL_SLACK:
        raise InvalidParameterError(
            "features",
            f"record {worst} with norm {norms[worst]:.6g}",
            "records of L2 norm <= 1 (scale them, e.g. with output_perturbation.unit_ball)",
        )
    return unit_ball(x)  # only moves records within the rounding slack


def _labels(labels: ArrayLike, n: int, num_classes: int) -> NDArray[np.int64]:
    y = np.asarray(labels)
    ok = y.shape == (n,) and y.dtype.kind in "iu" and y.min() >= 0 and y.max() < num_classes
    if not ok:
        raise InvalidParameterError(
            "labels", getattr(y, "shape", y), f"{n} integers in 0..{num_classes - 1}"
        )
    return y.astype(np.int64)


__all__ = [
    "SMOOTHNESS",
    "ObjectiveNoise",
    "objective_noise",
    "objective_noise_parameters",
    "objective_perturbation",
    "perturbed_logistic_regression",
]
