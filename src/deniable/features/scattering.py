"""The 2-D scattering transform (Mallat 2012; Bruna & Mallat 2013) in torch, by FFT.

For an image x, with the Morlet wavelets ψ_{j,t} and low-pass φ_J of :mod:`.morlet`:

    S₀x = x ⋆ φ_J,   S₁x(j₁,t₁) = |x ⋆ ψ_{j₁,t₁}| ⋆ φ_J,
    S₂x(j₁,t₁,j₂,t₂) = ||x ⋆ ψ_{j₁,t₁}| ⋆ ψ_{j₂,t₂}| ⋆ φ_J   (j₂ > j₁),

each subsampled by 2^J: 1 + JL + L²J(J−1)/2 channels (81 for J = 2, L = 8) of
(H/2^J) × (W/2^J) for an H × W image. This is the "ScatterNet" Tramèr & Boneh (2021) train linear
models and small CNNs on. The computation follows kymatio's ``scattering2d`` (Andreux et al. 2020),
so that the two agree to float precision:

1. reflect-pad the image to M_p = (⌊(M + 2^J)/2^J⌋ + 1)·2^J (36 for 28) on each axis, so that
   circular convolution does not wrap one border onto the other;
2. convolve by multiplying DFTs; subsample by 2^k in the Fourier domain (averaging the 2^k × 2^k
   aliases of the spectrum is the DFT of keeping every 2^k-th sample); the first-order signals
   |x ⋆ ψ_{j₁}| are kept at resolution 2^j₁ and their wavelet filters are taken at that level;
3. drop one output row/column on each side (the padded border): (M_p/2^J − 2) = H/2^J.

Channel order (as kymatio's): S₀; S₁ for (j₁, t₁) with j₁ major; S₂ for (j₁, t₁, j₂, t₂)
lexicographic. The transform is fixed (no learned parameter): computing it costs no privacy.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as nnf
from torch import nn

from deniable.errors import InvalidParameterError
from deniable.features.morlet import FilterBank, morlet_filter_bank


def padded_size(size: int, J: int) -> int:
    """The padded length kymatio uses: the next multiple of 2^J above size + 2^J − 1, plus 2^J."""
    return ((size + 2**J) // 2**J + 1) * 2**J


def num_channels(J: int, L: int) -> int:
    """1 + JL + L²J(J−1)/2 scattering channels per input channel (order 2)."""
    return 1 + J * L + L * L * J * (J - 1) // 2


def _subsample(x_hat: torch.Tensor, k: int) -> torch.Tensor:
    """DFT of x[::k, ::k] from the DFT of x (last two dims): the mean of the k × k aliases."""
    if k == 1:
        return x_hat
    m, n = x_hat.shape[-2:]
    a, b = m // k, n // k
    # Slices added one at a time: ~2× faster on CPU than a reshape and a two-axis complex mean.
    rows = x_hat[..., :a, :]
    for i in range(1, k):
        rows = rows + x_hat[..., i * a : (i + 1) * a, :]
    out = rows[..., :b]
    for i in range(1, k):
        out = out + rows[..., i * b : (i + 1) * b]
    return out / (k * k)


class Scattering2D(nn.Module):
    """Order-2 scattering of images of ``shape`` = (H, W) with J scales and L orientations.

    ``forward`` maps (B, C, H, W) to (B, C·K, H/2^J, W/2^J) with K = :func:`num_channels`;
    input channel c's K coefficients are contiguous. Filters are buffers (float32, in the Fourier
    domain), so ``.to(device)`` moves them.

    >>> import torch
    >>> scattering = Scattering2D((28, 28), J=2, L=8)
    >>> scattering(torch.zeros(3, 1, 28, 28)).shape
    torch.Size([3, 81, 7, 7])
    """

    def __init__(self, shape: tuple[int, int], *, J: int = 2, L: int = 8) -> None:
        super().__init__()
        height, width = shape
        self.padded = (padded_size(height, J), padded_size(width, J))
        if any((p - s + 1) // 2 >= s for p, s in zip(self.padded, shape, strict=True)):
            raise InvalidParameterError("shape", shape, f"more than 2^J = {2**J} on each side")
        self.shape = (int(height), int(width))
        self.J = J
        self.L = L
        self.bank: FilterBank = morlet_filter_bank(self.padded, J, L)
        for level, phi in enumerate(self.bank.phi):
            self.register_buffer(f"phi_{level}", torch.as_tensor(phi, dtype=torch.float32))
        for j in range(J):
            for level in range(len(self.bank.psi[j * L].levels)):
                stacked = [w.levels[level] for w in self.bank.psi[j * L : (j + 1) * L]]
                tensor = torch.as_tensor(np.stack(stacked), dtype=torch.float32)  # (L, M, N)
                self.register_buffer(f"psi_{j}_{level}", tensor)

    @property
    def output_shape(self) -> tuple[int, int, int]:
        """(K, H/2^J, W/2^J) per input channel."""
        return (
            num_channels(self.J, self.L),
            self.padded[0] // 2**self.J - 2,
            self.padded[1] // 2**self.J - 2,
        )

    def _phi(self, level: int) -> torch.Tensor:
        buffer: torch.Tensor = getattr(self, f"phi_{level}")
        return buffer

    def _psi(self, j: int, level: int) -> torch.Tensor:
        buffer: torch.Tensor = getattr(self, f"psi_{j}_{level}")
        return buffer

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        (h, w), (mh, mw) = self.shape, self.padded
        top, left = (mh - h) // 2, (mw - w) // 2
        return nnf.pad(x, (left, mw - w - left, top, mh - h - top), mode="reflect")

    def _lowpass(self, u_hat: torch.Tensor, level: int) -> torch.Tensor:
        """Real part of (u ⋆ φ_J) subsampled to resolution 2^J, border dropped."""
        s_hat = _subsample(u_hat * self._phi(level), 2 ** (self.J - level))
        return torch.fft.ifft2(s_hat).real[..., 1:-1, 1:-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or tuple(x.shape[-2:]) != self.shape:
            raise InvalidParameterError(
                "x",
                f"shape {tuple(x.shape)}",
                f"(batch, channels, {self.shape[0]}, {self.shape[1]})",
            )
        batch, channels = x.shape[:2]
        J = self.J
        padded = self._pad(x.reshape(batch * channels, 1, *self.shape)).squeeze(1)
        x_hat = torch.fft.fft2(padded.to(torch.complex64))  # (BC, M, N)
        orders = [self._lowpass(x_hat, 0).unsqueeze(1)]
        first: list[torch.Tensor] = []
        second: list[torch.Tensor] = []
        for j1 in range(J):
            u1 = torch.fft.ifft2(_subsample(x_hat.unsqueeze(1) * self._psi(j1, 0), 2**j1)).abs()
            u1_hat = torch.fft.fft2(u1.to(torch.complex64))  # (BC, L, M/2^j1, N/2^j1)
            first.append(self._lowpass(u1_hat, j1))
            for j2 in range(j1 + 1, J):
                filtered = u1_hat.unsqueeze(2) * self._psi(j2, j1)  # (BC, L, L, ., .)
                u2 = torch.fft.ifft2(_subsample(filtered, 2 ** (j2 - j1))).abs()
                second.append(self._lowpass(torch.fft.fft2(u2.to(torch.complex64)), j2))
        orders.extend(first)
        # S₂ order: (j1, t1, j2, t2); per j1 the blocks for j2 > j1 are concatenated along t2.
        index = 0
        for j1 in range(J):
            blocks = second[index : index + J - j1 - 1]
            index += J - j1 - 1
            if blocks:
                joined = torch.cat(blocks, dim=2)  # (BC, L, (J−j1−1)·L, h, w)
                orders.append(joined.reshape(batch * channels, -1, *joined.shape[-2:]))
        out = torch.cat(orders, dim=1)
        return out.reshape(batch, channels * out.shape[1], *out.shape[-2:])
