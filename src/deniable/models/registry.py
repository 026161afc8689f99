"""Models by name, sized from a dataset's feature shape: the entry point of the trainer and CLI.

``mlp`` and ``logreg`` take any feature shape (they flatten); the ``*cnn`` models need images
shaped ``(channels, height, width)``, the ``papernot-*`` ones at least 16×16. ``papernot-gn-cnn``
adds GroupNorm to ``papernot-cnn`` and ``papernot-ws-gn-cnn`` weight standardisation as well
(:mod:`deniable.models.standardized`). Every model here is DP-SGD compatible: no BatchNorm, no
in-place operations.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from torch import nn

from deniable.errors import InvalidParameterError, check_count
from deniable.models.cnn import PapernotCNN, SmallCNN, TemperedSigmoidCNN
from deniable.models.linear import LogisticRegression, UnitBallLinear
from deniable.models.mlp import MLP
from deniable.models.standardized import GroupNormPapernotCNN, WSConv2d

Shape = tuple[int, ...]


def _flat(shape: Shape) -> int:
    return math.prod(shape)


def _image(name: str, shape: Shape) -> tuple[int, tuple[int, int]]:
    if len(shape) != 3:
        raise InvalidParameterError(
            "feature_shape",
            shape,
            f"(channels, height, width) for model {name!r} (use 'mlp' or 'logreg' otherwise)",
        )
    return shape[0], (shape[1], shape[2])


def _cnn(shape: Shape, num_classes: int) -> nn.Module:
    channels, size = _image("cnn", shape)
    return SmallCNN(channels, num_classes, size)


def _tanh_cnn(shape: Shape, num_classes: int) -> nn.Module:
    channels, size = _image("tanh-cnn", shape)
    return TemperedSigmoidCNN(channels, num_classes, size)


def _papernot_cnn(shape: Shape, num_classes: int) -> nn.Module:
    channels, size = _image("papernot-cnn", shape)
    return PapernotCNN(channels, num_classes, size)


def _papernot_gn_cnn(shape: Shape, num_classes: int) -> nn.Module:
    channels, size = _image("papernot-gn-cnn", shape)
    return GroupNormPapernotCNN(channels, num_classes, size)


def _papernot_ws_gn_cnn(shape: Shape, num_classes: int) -> nn.Module:
    channels, size = _image("papernot-ws-gn-cnn", shape)
    return GroupNormPapernotCNN(channels, num_classes, size, conv=WSConv2d)


_BUILDERS: dict[str, Callable[[Shape, int], nn.Module]] = {
    "mlp": lambda shape, k: MLP(_flat(shape), k),
    "cnn": _cnn,
    "tanh-cnn": _tanh_cnn,
    "papernot-cnn": _papernot_cnn,
    "logreg": lambda shape, k: LogisticRegression(_flat(shape), k),
    "unit-ball-logreg": lambda shape, k: UnitBallLinear(_flat(shape), k),
    "papernot-gn-cnn": _papernot_gn_cnn,
    "papernot-ws-gn-cnn": _papernot_ws_gn_cnn,
}

MODELS: tuple[str, ...] = tuple(_BUILDERS)
"""The model names :func:`build_model` knows."""


def build_model(name: str, feature_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """A freshly initialised model ``name`` (one of :data:`MODELS`) for the given data shape.

    >>> import torch
    >>> build_model("cnn", (1, 8, 8), 10)(torch.zeros(2, 1, 8, 8)).shape
    torch.Size([2, 10])
    """
    if name not in _BUILDERS:
        raise InvalidParameterError("model", name, f"one of {', '.join(MODELS)}")
    shape = tuple(feature_shape)
    if not shape or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in shape
    ):
        raise InvalidParameterError("feature_shape", feature_shape, "a tuple of integers >= 1")
    return _BUILDERS[name](shape, check_count("num_classes", num_classes, 2))
