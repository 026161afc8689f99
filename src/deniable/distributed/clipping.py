"""Client-update clipping for DP-FedAvg: a fixed bound, or one that adapts to a quantile.

**Fixed** (McMahan, Ramage, Talwar & Zhang 2018, "Learning Differentially Private Recurrent
Language Models"): each sampled client's update Δ_k is scaled to ‖Δ_k‖ ≤ S, the server adds
N(0, z²S²·I) to the sum once per round: a Gaussian mechanism with L2 sensitivity S per *client*
(add/remove-one client, user-level DP), amplified by Poisson sampling of clients with rate q.

**Adaptive** (Andrew, Thakkar, McMahan & Ramaswamy 2021, "Differentially Private Learning with
Adaptive Clipping"): S follows the γ-quantile of the update norms by the geometric step

    S ← S · exp(−η (b̄ − γ)),   b̄ = clamp( (Σ_k (b_k − ½) + N(0, σ_b²)) / (qK) + ½, 0, 1 ),

with b_k = 1[‖Δ_k‖ ≤ S]. The centred indicator b_k − ½ moves the count by at most ½ when one
client is added or removed, so the count is a second Gaussian mechanism with sensitivity ½ and
noise σ_b, run on the same sampled clients. Both are released each round, and together they are
exactly one Gaussian mechanism on the concatenated vector (scale the count by zS/σ_b so both
carry noise zS): sensitivity S·sqrt(1 + (z/(2σ_b))²). We record that one event, in units of the
round's S (σ = z, sensitivity sqrt(1 + (z/(2σ_b))²)), so rounds with different S are the same
event. Its noise multiplier is (z⁻² + (2σ_b)⁻²)^(−1/2), Andrew et al.'s Theorem 1; to reach an
overall multiplier z_total, run the updates at :func:`update_noise_multiplier` (z_total, σ_b).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from deniable.errors import DeniableError, InvalidParameterError, check_positive
from deniable.events import GaussianEvent


@dataclass(frozen=True)
class FixedClipping:
    """Clip every client update to L2 norm ``norm`` (S)."""

    norm: float

    def __post_init__(self) -> None:
        check_positive("norm", self.norm)

    @property
    def initial_norm(self) -> float:
        return self.norm

    def event(self, noise_multiplier: float) -> GaussianEvent:
        """One round's Gaussian on the clipped sum: noise z·S, sensitivity S."""
        return GaussianEvent(sigma=noise_multiplier * self.norm, sensitivity=self.norm)


@dataclass(frozen=True)
class AdaptiveClipping:
    """Geometric quantile tracking of the clipping norm (Andrew et al. 2021).

    ``initial_norm`` S₀, ``target_quantile`` γ (share of clients left unclipped),
    ``learning_rate`` η (S changes by at most a factor e^η per round), ``count_noise_std`` σ_b
    (std of the Gaussian on the centred count; Andrew et al. suggest expected clients / 20).
    """

    initial_norm: float
    target_quantile: float = 0.5
    learning_rate: float = 0.2
    count_noise_std: float = 1.0

    def __post_init__(self) -> None:
        check_positive("initial_norm", self.initial_norm)
        if not 0 < self.target_quantile < 1:
            raise InvalidParameterError("target_quantile", self.target_quantile, "in (0, 1)")
        check_positive("learning_rate", self.learning_rate)
        check_positive("count_noise_std", self.count_noise_std)

    def event(self, noise_multiplier: float) -> GaussianEvent:
        """Updates and count as one Gaussian, in units of the round's clipping norm."""
        ratio = noise_multiplier / (2.0 * self.count_noise_std)
        return GaussianEvent(sigma=noise_multiplier, sensitivity=math.sqrt(1.0 + ratio**2))

    def next_norm(self, norm: float, noisy_centred_count: float, expected_clients: float) -> float:
        """S·exp(−η(b̄ − γ)) from the noised Σ(b_k − ½) of this round."""
        below = min(1.0, max(0.0, noisy_centred_count / expected_clients + 0.5))
        return norm * math.exp(-self.learning_rate * (below - self.target_quantile))


Clipping = FixedClipping | AdaptiveClipping


def update_noise_multiplier(total_noise_multiplier: float, count_noise_std: float) -> float:
    """z_Δ = (z⁻² − (2σ_b)⁻²)^(−1/2): the update noise that, with the count's, gives z in all.

    Andrew et al. 2021, Section 3. Needs 2σ_b > z (else the count alone spends the budget).
    """
    z = check_positive("total_noise_multiplier", total_noise_multiplier)
    sigma_b = check_positive("count_noise_std", count_noise_std)
    rest = z**-2 - (2.0 * sigma_b) ** -2
    if rest <= 0:
        raise DeniableError(
            f"count_noise_std {sigma_b:g} is too small for a total noise multiplier {z:g}: "
            f"it must exceed {z / 2:g}"
        )
    return rest**-0.5
