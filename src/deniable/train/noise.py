"""The source of DP-SGD's Gaussian noise.

Seeded mode is reproducible (tests, research) and its generator state goes into checkpoints.
Secure mode seeds the generator from the OS CSPRNG (``os.urandom``) and never writes its state
anywhere: whoever knows the noise can subtract it from the model updates and read the clipped
gradient sums, which would void the guarantee. A secure run resumed from a checkpoint reseeds
from the OS again.
"""

from __future__ import annotations

import os

import torch


class NoiseSource:
    """Gaussian noise from a torch.Generator; ``secure`` says where its seed came from."""

    def __init__(self, seed: int | None = None) -> None:
        self.secure = seed is None
        start = int.from_bytes(os.urandom(8), "little") if seed is None else seed
        self.generator = torch.Generator().manual_seed(start)

    def gaussian_like(self, tensor: torch.Tensor, std: float) -> torch.Tensor:
        """N(0, std²) noise with the shape and dtype of ``tensor``."""
        noise = torch.randn(
            tensor.shape, generator=self.generator, dtype=tensor.dtype, device="cpu"
        )
        return (noise * std).to(tensor.device)

    def state_dict(self) -> dict[str, object]:
        """Only a seeded source has state worth saving; a secure one saves none (see above)."""
        if self.secure:
            return {"secure": True}
        return {"secure": False, "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, object]) -> None:
        if state.get("secure"):
            return  # keep the fresh OS-seeded generator
        generator_state = state["generator"]
        assert isinstance(generator_state, torch.Tensor)
        self.secure = False
        self.generator.set_state(generator_state)
