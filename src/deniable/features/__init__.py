"""Handcrafted features for private learning: ScatterNet (Tramèr & Boneh 2021).

- :class:`Scattering2D`: the order-2 scattering transform (Morlet wavelets, J scales, L
  orientations; 81 channels of 7 × 7 for a 28 × 28 image with J = 2, L = 8), by FFT in torch;
  filters built in the Fourier domain (:mod:`deniable.features.morlet`). Fixed, so free.
- Normalisation of the features: :func:`group_normalize` (per example, free) or
  :func:`private_channel_stats` + :func:`standardize` (Gaussian mechanism; its event must be
  composed with training's, which :func:`noise_multiplier_after` and the pipeline do).
- :func:`train_on_scattering`: normalise, calibrate σ for the composed run, DP-SGD through
  :func:`deniable.train.private.make_private`, evaluate; ε reported from the events.

>>> import torch
>>> from deniable.features import Scattering2D
>>> Scattering2D((28, 28), J=2, L=8)(torch.rand(2, 1, 28, 28)).shape
torch.Size([2, 81, 7, 7])
"""

from __future__ import annotations

from deniable.features.morlet import FilterBank, littlewood_paley, morlet_filter_bank
from deniable.features.normalize import (
    ChannelStats,
    channel_stats,
    group_normalize,
    noise_multiplier_after,
    private_channel_stats,
    standardize,
)
from deniable.features.pipeline import (
    GroupNormalization,
    PrivateNormalization,
    ScatterNetConfig,
    ScatterNetResult,
    scatter_images,
    scatter_model,
    train_on_scattering,
)
from deniable.features.scattering import Scattering2D, num_channels

__all__ = [
    "ChannelStats",
    "FilterBank",
    "GroupNormalization",
    "PrivateNormalization",
    "ScatterNetConfig",
    "ScatterNetResult",
    "Scattering2D",
    "channel_stats",
    "group_normalize",
    "littlewood_paley",
    "morlet_filter_bank",
    "noise_multiplier_after",
    "num_channels",
    "private_channel_stats",
    "scatter_images",
    "scatter_model",
    "standardize",
    "train_on_scattering",
]
