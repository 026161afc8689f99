"""Normalising scattering features, for free or for a stated, composed privacy cost.

Tramèr & Boneh (2021, §3 and App. B, "Algorithm 2: private data normalization") normalise the
81 ScatterNet channels before the linear model or CNN, in one of two ways:

- :func:`group_normalize`: Group Normalization (Wu & He 2018) with no affine part, applied to each
  example on its own: each of G contiguous channel groups is standardised with the mean and
  variance of *that example's* group. No statistic of other examples is used, so it costs no
  privacy (DP-SGD's clipping already bounds what the normalised example contributes).
- :func:`private_channel_stats` then :func:`standardize`: the per-channel mean and variance over
  the training set, estimated with the Gaussian mechanism. Its event must be composed with the
  DP-SGD events (:func:`noise_multiplier_after` calibrates DP-SGD for the remaining budget).

Sensitivity of the private statistics. For example i with features x_i of shape (K, h, w), let
m_i[k] = (1/hw) Σ_p x_i[k, p] and q_i[k] = (1/hw) Σ_p x_i[k, p]² (its per-channel mean and mean
square), clipped in L2 norm: m̃_i = m_i·min(1, c_m/‖m_i‖₂), q̃_i = q_i·min(1, c_q/‖q_i‖₂). Adding or
removing one example moves Σ_i m̃_i by at most c_m and Σ_i q̃_i by at most c_q in L2 norm
(replace-one: 2c_m and 2c_q). We release Σ_i m̃_i + N(0, σ²c_m²·I_K) and Σ_i q̃_i + N(0, σ²c_q²·I_K):
two Gaussian mechanisms with noise multiplier σ, ``ComposedEvent([GaussianEvent(σc_m, c_m),
GaussianEvent(σc_q, c_q)])`` (together √2/σ-GDP). Then μ̂ = S_m/n and v̂ = max(S_q/n − μ̂², 0) are
post-processing, with the dataset size n treated as public, as DP-SGD's q = B/n already does.

Unlike the authors' code, which clips at the median norm of the private data ("technically a small
privacy leak"), the clipping bounds c_m and c_q are parameters fixed before looking at the data.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as nnf

from deniable.accounting import calibrate
from deniable.accounting import epsilon as account_epsilon
from deniable.errors import DeniableError, InvalidParameterError, check_count, check_positive
from deniable.events import ComposedEvent, NonPrivateEvent, NoOpEvent, PrivacyEvent
from deniable.mechanisms import RandomSource, gaussian_unsafe_float

Detail = float | int | str


def _check_features(features: torch.Tensor) -> torch.Tensor:
    if features.dim() < 2 or features.shape[0] < 1:
        raise InvalidParameterError(
            "features", f"shape {tuple(features.shape)}", "(n >= 1, channels, *spatial)"
        )
    if not torch.isfinite(features).all():
        raise InvalidParameterError("features", "non-finite entries", "finite values")
    return features


def group_normalize(features: torch.Tensor, num_groups: int, *, eps: float = 1e-5) -> torch.Tensor:
    """Per-example Group Normalization without affine parameters (costs no privacy).

    ``features``: (n, K, *spatial); channel groups are K/G contiguous channels. The same as
    ``torch.nn.GroupNorm(num_groups, K, affine=False, eps=eps)`` applied to the batch.
    """
    features = _check_features(features)
    channels = int(features.shape[1])
    check_count("num_groups", num_groups)
    if channels % num_groups:
        raise InvalidParameterError("num_groups", num_groups, f"a divisor of {channels} channels")
    return nnf.group_norm(features, num_groups, eps=check_positive("eps", eps))


@dataclass(frozen=True)
class ChannelStats:
    """Per-channel mean and variance of features, and the event of how they were obtained.

    ``event`` is :class:`~deniable.events.NonPrivateEvent` for exact statistics (infinite ε) and
    the composed Gaussian event for :func:`private_channel_stats`.
    """

    mean: torch.Tensor
    var: torch.Tensor
    event: PrivacyEvent
    details: dict[str, Detail] = field(default_factory=dict)


def _moments(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-example, per-channel mean and mean square: two (n, K) float64 tensors (each example
    in its own precision; the sums over examples are then taken in float64)."""
    flat = features.reshape(features.shape[0], features.shape[1], -1)
    return flat.mean(dim=2).double(), flat.square().mean(dim=2).double()


def channel_stats(features: torch.Tensor) -> ChannelStats:
    """Exact per-channel mean and variance over examples and positions. NOT private: for
    non-private baselines and tests; its event is :class:`NonPrivateEvent`."""
    means, squares = _moments(_check_features(features))
    mean = means.mean(dim=0)
    var = (squares.mean(dim=0) - mean**2).clamp(min=0.0)
    return ChannelStats(mean.float(), var.float(), NonPrivateEvent(), {"count": len(means)})


def _clip_rows(rows: torch.Tensor, bound: float) -> tuple[torch.Tensor, float]:
    norms = rows.norm(dim=1, keepdim=True)
    scale = torch.clamp(bound / norms.clamp(min=1e-300), max=1.0)
    return rows * scale, float((norms > bound).double().mean())


def private_channel_stats(
    features: torch.Tensor,
    *,
    noise_multiplier: float,
    mean_clip: float,
    square_clip: float,
    rng: RandomSource | None = None,
) -> ChannelStats:
    """Per-channel mean and variance with the Gaussian mechanism (see the module docstring).

    ``noise_multiplier`` σ (Tramèr & Boneh use 8), ``mean_clip`` c_m and ``square_clip`` c_q
    bound each example's per-channel mean and mean-square vectors in L2 norm; choose them
    without looking at the private data. The event is
    ``ComposedEvent([GaussianEvent(σ·c_m, c_m), GaussianEvent(σ·c_q, c_q)])``, emitted by
    :func:`deniable.mechanisms.gaussian_unsafe_float` (floating-point noise, as for DP-SGD's
    gradients). ``rng`` defaults to a fresh secure source.
    """
    sigma = check_positive("noise_multiplier", noise_multiplier)
    c_m = check_positive("mean_clip", mean_clip)
    c_q = check_positive("square_clip", square_clip)
    means, squares = _moments(_check_features(features))
    n = int(means.shape[0])
    clipped_means, frac_m = _clip_rows(means, c_m)
    clipped_squares, frac_q = _clip_rows(squares, c_q)
    source = rng if rng is not None else RandomSource.secure()
    noisy_sum = gaussian_unsafe_float(
        clipped_means.sum(dim=0).numpy(), sigma=sigma * c_m, sensitivity=c_m, rng=source
    )
    noisy_squares = gaussian_unsafe_float(
        clipped_squares.sum(dim=0).numpy(), sigma=sigma * c_q, sensitivity=c_q, rng=source
    )
    mean = noisy_sum.value / n
    var = np.maximum(noisy_squares.value / n - mean**2, 0.0)
    details: dict[str, Detail] = {
        "count": n,
        "noise_multiplier": sigma,
        "mean_clip": c_m,
        "square_clip": c_q,
        "clipped_fraction_mean": frac_m,
        "clipped_fraction_square": frac_q,
        "zero_variance_channels": int(np.count_nonzero(var == 0.0)),
        "secure": str(source.is_secure),
    }
    return ChannelStats(
        torch.as_tensor(mean, dtype=torch.float32),
        torch.as_tensor(var, dtype=torch.float32),
        ComposedEvent([noisy_sum.event, noisy_squares.event]),
        details,
    )


def standardize(features: torch.Tensor, stats: ChannelStats, *, eps: float = 1e-5) -> torch.Tensor:
    """(x − μ_k)/sqrt(v_k + eps) per channel k; channels whose variance estimate is 0 (noise
    pushed it below zero) are set to 0 rather than blown up by 1/sqrt(eps), as the authors do."""
    features = _check_features(features)
    channels = int(features.shape[1])
    if stats.mean.shape != (channels,) or stats.var.shape != (channels,):
        raise InvalidParameterError(
            "stats", f"{tuple(stats.mean.shape)} statistics", f"one per channel ({channels})"
        )
    view = (1, channels) + (1,) * (features.dim() - 2)
    mean = stats.mean.to(features.dtype).reshape(view)
    var = stats.var.to(features.dtype).reshape(view)
    scaled = (features - mean) / torch.sqrt(var + check_positive("eps", eps))
    return scaled * (var > 0).to(features.dtype)


def noise_multiplier_after(
    prior: PrivacyEvent,
    *,
    target_epsilon: float,
    delta: float,
    sample_rate: float,
    steps: int,
    accountant: str = "pld",
) -> float:
    """The smallest DP-SGD noise multiplier σ with ε(prior ∘ DP-SGD(σ, q, T)) ≤ target at δ.

    ``prior`` is what was spent before training on the same data (e.g. a
    :class:`ChannelStats` event); DP-SGD is T Poisson-sampled Gaussian steps at rate q. Raises
    :class:`DeniableError` when ``prior`` alone already spends the target.
    """
    check_positive("target_epsilon", target_epsilon)
    if isinstance(prior, NonPrivateEvent):
        raise DeniableError(
            "the preprocessing is not private (infinite epsilon): use private "
            "statistics or a data-independent normalisation"
        )
    if not isinstance(prior, NoOpEvent):
        spent = account_epsilon(prior, delta, accountant=accountant).epsilon
        if spent >= target_epsilon:
            raise DeniableError(
                f"the preprocessing alone spends epsilon {spent:.3f} >= target {target_epsilon}: "
                "raise its noise multiplier or the target epsilon"
            )

    def event(z: float) -> PrivacyEvent:
        training = calibrate.dpsgd_event(z, sample_rate, steps)
        return training if isinstance(prior, NoOpEvent) else ComposedEvent([prior, training])

    sigma, _ = calibrate.smallest_noise(event, target_epsilon, delta, accountant=accountant)
    return sigma
