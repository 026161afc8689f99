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
        # row-major: GroupNorm's channels-last CPU kernels cost this net more than its 2×2
        # pooling gains (DP-SGD step 84–111 against 79–98 ms row-major, batch 256, measured)

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
        to_channels_last(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def to_channels_last(model: nn.Module) -> nn.Module:
    """Store the model's convolution kernels channels-last (NHWC), in place, and return it.

    A convolution with a channels-last kernel writes channels-last activations, and the layers
    after it (activations, pooling, GroupNorm, the next convolution) keep that layout. On CPU
    this is much faster for the tempered-sigmoid nets: measured with one thread, batch 256, the
    Papernot et al. CNN's non-private step went from 34 to 19 ms (``max_pool2d`` with stride 1
    is ~3× faster on NHWC) and its DP-SGD step from 54 to 40 ms; with GroupNorm 31–34 → 21 and
    46–48 → 36 ms; :class:`TemperedSigmoidCNN` 68 → 47 and 86 → 70 ms. Not :class:`SmallCNN`:
    GroupNorm's NHWC kernels cost it more than its pooling gains. The function is unchanged:
    only strides differ, state dicts load either way, and ``model.to(device)`` keeps the layout.
    """
    return model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # not in the stubs


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


class PapernotCNN(nn.Module):
    """The MNIST/Fashion-MNIST CNN of Papernot et al. (2021), Table 1, with tempered sigmoids.

    Conv(16, 8×8, stride 2, padding 3) → act → MaxPool(2, stride 1) → Conv(32, 4×4, stride 2)
    → act → MaxPool(2, stride 1) → Linear(32) → act → Linear(classes). The strided
    convolutions make it about ten times cheaper than :class:`SmallCNN` on 28×28 images; with
    tanh it reaches 98.1 % on MNIST at ε = 2.93 in the paper. Needs images of at least 16×16.
    ``group_norm=True`` puts GroupNorm (4 channels per group) after each convolution; ``conv``
    is the convolution class (e.g. :class:`~deniable.models.standardized.WSConv2d`).
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        image_size: int | tuple[int, int],
        *,
        scale: float = 2.0,
        temperature: float = 2.0,
        offset: float = 1.0,
        conv: type[nn.Conv2d] = nn.Conv2d,
        group_norm: bool = False,
    ) -> None:
        super().__init__()
        height, width = _image_size(image_size)
        if min(height, width) < 16:
            raise InvalidParameterError(
                "image_size", image_size, f"at least 16×16 for {type(self).__name__}"
            )

        def act() -> nn.Module:
            return TemperedSigmoid(scale, temperature, offset)

        def block(conv_layer: nn.Conv2d) -> list[nn.Module]:
            channels = conv_layer.out_channels
            norm = [nn.GroupNorm(channels // CHANNELS_PER_GROUP, channels)] if group_norm else []
            return [conv_layer, *norm, act(), nn.MaxPool2d(2, 1)]

        self.features = nn.Sequential(
            *block(conv(check_count("in_channels", in_channels), 16, 8, stride=2, padding=3)),
            *block(conv(16, 32, 4, stride=2)),
            nn.Flatten(),
        )
        with torch.no_grad():
            flat = self.features(torch.zeros(1, in_channels, height, width)).shape[1]
        self.classifier = nn.Sequential(
            nn.Linear(flat, 32), act(), nn.Linear(32, check_count("num_classes", num_classes, 2))
        )
        to_channels_last(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))
