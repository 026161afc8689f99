"""Small convolutional nets for private image classification (8×8 digits to 28×28 MNIST and up).

Both follow the shape of the Opacus / TF Privacy MNIST example (two convolutions with 16 and 32
channels, each followed by pooling, then two linear layers), with 3×3 same-padded convolutions and
2×2 max-pooling so that they fit any image from 4×4 up:

- :class:`SmallCNN`: ReLU and GroupNorm after each convolution. GroupNorm normalises within one
  example, so unlike BatchNorm it does not mix examples and per-example gradients stay defined.
- :class:`TemperedSigmoidCNN`: the same net with a tempered sigmoid (tanh by default) and no
  normalisation, as in Papernot, Thakurta, Song, Chien & Erlingsson (2021), "Tempered sigmoid
  activations for deep learning with differential privacy".
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from deniable.errors import InvalidParameterError, check_count
from deniable.models.activations import TemperedSigmoid

CHANNELS = (16, 32)
HIDDEN = 32
CHANNELS_PER_GROUP = 4


class SmallCNN(nn.Module):
    """conv3×3(16)–GroupNorm–ReLU–pool, conv3×3(32)–GroupNorm–ReLU–pool, linear(32)–ReLU–linear."""

    def __init__(
        self, in_channels: int, num_classes: int, image_size: int | tuple[int, int]
    ) -> None:
        super().__init__()
        self.features, self.classifier = _build(
            in_channels, num_classes, image_size, lambda: nn.ReLU(inplace=False), normalise=True
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class TemperedSigmoidCNN(nn.Module):
    """:class:`SmallCNN` with φ(x) = s·σ(T·x) − o activations (tanh: 2, 2, 1), no normalisation."""

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        image_size: int | tuple[int, int],
        *,
        scale: float = 2.0,
        temperature: float = 2.0,
        offset: float = 1.0,
    ) -> None:
        super().__init__()
        TemperedSigmoid(scale, temperature, offset)  # validate before building
        self.features, self.classifier = _build(
            in_channels,
            num_classes,
            image_size,
            lambda: TemperedSigmoid(scale, temperature, offset),
            normalise=False,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def _build(
    in_channels: int,
    num_classes: int,
    image_size: int | tuple[int, int],
    act: Callable[[], nn.Module],
    *,
    normalise: bool,
) -> tuple[nn.Sequential, nn.Sequential]:
    height, width = _image_size(image_size)
    layers: list[nn.Module] = []
    fan_in = check_count("in_channels", in_channels)
    for channels in CHANNELS:
        layers.append(nn.Conv2d(fan_in, channels, kernel_size=3, padding=1))
        if normalise:
            layers.append(nn.GroupNorm(channels // CHANNELS_PER_GROUP, channels))
        layers += [act(), nn.MaxPool2d(2)]
        fan_in = channels
        height, width = height // 2, width // 2
    features = nn.Sequential(*layers, nn.Flatten())
    classifier = nn.Sequential(
        nn.Linear(fan_in * height * width, HIDDEN),
        act(),
        nn.Linear(HIDDEN, check_count("num_classes", num_classes, 2)),
    )
    return features, classifier


def _image_size(image_size: int | tuple[int, int]) -> tuple[int, int]:
    pair = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    if len(pair) != 2 or not all(
        isinstance(s, int) and not isinstance(s, bool) and s >= 4 for s in pair
    ):
        raise InvalidParameterError(
            "image_size", image_size, "an integer >= 4 or a (height, width) pair of them"
        )
    return (pair[0], pair[1])
