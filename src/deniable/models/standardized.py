"""Weight standardisation and GroupNorm: normalisation that never mixes the examples of a batch.

:class:`WSConv2d` is a convolution whose weight is standardised per output channel before every
use, ŵ = (w − mean(w)) / sqrt(var(w) + eps) over (in, kh, kw) (Qiao et al. 2019, "Micro-Batch
Training with Batch-Channel Normalization and Weight Standardization"). Followed by GroupNorm it
replaces BatchNorm in Kolesnikov et al. (2020), "Big Transfer (BiT)", and in the DP-SGD image
classifiers of De, Berrada, Hayes, Smith & Balle (2022), "Unlocking High-Accuracy Differentially
Private Image Classification through Scale". Both normalise within one example (GroupNorm) or
within the parameters (WS), so per-example gradients stay defined and clipping still bounds one
example's influence.

The standardisation is computed in ``forward`` from the raw weight, so gradients flow through it
(the trained parameter is the raw ``weight``). :class:`WSConv2d` overrides ``forward``, so the
Conv2d ghost rule (which differentiates with respect to the weight the convolution sees) never
applies to it: its per-example gradients come from torch.func vmap, checked against a loop of
per-example backward passes in ``tests/test_models_standardized.py``.

:class:`GroupNormPapernotCNN` is :class:`~deniable.models.cnn.PapernotCNN` with GroupNorm after
each convolution, and with ``conv=WSConv2d`` weight-standardised convolutions as well: the
architecture of the Papernot et al. (2021) MNIST net with De et al.'s normalisation, so that the
effect of each can be measured alone (``benchmarks/practices_ws_batch.py``).
"""

from __future__ import annotations

import torch
from torch import nn

from deniable.errors import InvalidParameterError, check_positive
from deniable.models.cnn import PapernotCNN

DEFAULT_EPS = 1e-5


def standardize_weight(weight: torch.Tensor, eps: float = DEFAULT_EPS) -> torch.Tensor:
    """``(w − mean) / sqrt(var + eps)`` per output channel (dim 0), over all other dims.

    The variance is the population variance (divide by the number of entries), as in BiT.
    """
    dims = tuple(range(1, weight.dim()))
    var, mean = torch.var_mean(weight, dim=dims, keepdim=True, correction=0)
    return (weight - mean) / torch.sqrt(var + eps)


class WSConv2d(nn.Conv2d):
    """:class:`torch.nn.Conv2d` whose weight is standardised per output channel in every forward.

    Same arguments as ``nn.Conv2d`` (keyword ``eps`` added: the variance floor). The bias, if
    any, is used as it is.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] | str = 0,
        dilation: int | tuple[int, int] = 1,
        groups: int = 1,
        bias: bool = True,
        *,
        eps: float = DEFAULT_EPS,
    ) -> None:
        super().__init__(
            in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias
        )
        self.eps = check_positive("eps", eps)
        if self.weight[0].numel() < 2:
            raise InvalidParameterError(
                "kernel_size", kernel_size, "more than one weight per output channel to standardise"
            )

    def standardized_weight(self) -> torch.Tensor:
        """The weight the convolution uses: :func:`standardize_weight` of ``self.weight``."""
        return standardize_weight(self.weight, self.eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.standardized_weight(), self.bias)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, eps={self.eps}"


class GroupNormPapernotCNN(PapernotCNN):
    """:class:`~deniable.models.cnn.PapernotCNN` with GroupNorm(4 channels per group) after each
    convolution; ``conv=WSConv2d`` also standardises the convolution weights.

    Conv(16, 8×8, stride 2, padding 3) → GroupNorm → act → MaxPool(2, stride 1) → Conv(32, 4×4,
    stride 2) → GroupNorm → act → MaxPool(2, stride 1) → Linear(32) → act → Linear(classes), with
    the same tempered sigmoid (tanh by default). Needs images of at least 16×16.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        image_size: int | tuple[int, int],
        *,
        conv: type[nn.Conv2d] = nn.Conv2d,
        scale: float = 2.0,
        temperature: float = 2.0,
        offset: float = 1.0,
    ) -> None:
        super().__init__(
            in_channels,
            num_classes,
            image_size,
            scale=scale,
            temperature=temperature,
            offset=offset,
            conv=conv,
            group_norm=True,
        )
