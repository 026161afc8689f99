"""Small reference models for private training; all DP-SGD compatible (no BatchNorm, no in-place).

- :class:`MLP`, :class:`LogisticRegression`: flatten their input (tabular data, small images).
- :class:`SmallCNN`: two conv layers (16/32 channels) with GroupNorm, pooling, two linear layers.
- :class:`TemperedSigmoidCNN`: the same with tempered sigmoid (tanh) activations and no
  normalisation (Papernot et al. 2021); :class:`TemperedSigmoid` is the activation.
- :class:`WSConv2d`: a convolution with weights standardised per output channel;
  :class:`GroupNormPapernotCNN`: the Papernot et al. CNN with GroupNorm (and WS convolutions).
- :func:`build_model`: by name (:data:`MODELS`) sized from a dataset's feature shape.
"""

from __future__ import annotations

from deniable.models.activations import ACTIVATIONS, TemperedSigmoid
from deniable.models.cnn import PapernotCNN, SmallCNN, TemperedSigmoidCNN
from deniable.models.linear import LogisticRegression
from deniable.models.mlp import MLP
from deniable.models.registry import MODELS, build_model
from deniable.models.standardized import GroupNormPapernotCNN, WSConv2d

__all__ = [
    "ACTIVATIONS",
    "MLP",
    "MODELS",
    "GroupNormPapernotCNN",
    "LogisticRegression",
    "PapernotCNN",
    "SmallCNN",
    "TemperedSigmoid",
    "TemperedSigmoidCNN",
    "WSConv2d",
    "build_model",
]
