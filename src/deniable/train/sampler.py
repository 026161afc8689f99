"""Batch samplers whose randomness is exactly what the accountant assumes.

- :class:`PoissonSampler` (the default): every privacy unit joins each batch independently with
  probability q, so batch sizes are Binomial(U, q) and empty batches happen. Accounted as
  :class:`~deniable.events.PoissonSampledEvent` under add/remove-one.
- :class:`FixedSizeSampler`: every batch is a uniformly random subset of exactly m of the U
  units, drawn afresh each step. Accounted as
  :class:`~deniable.events.SampledWithoutReplacementEvent` under replace-one. (An epoch-wise
  shuffle is *not* this and has no amplification theorem we use, so it is not offered.)

A privacy unit is an example, or a user/group key: the sampler samples units, and a batch holds
every example of each sampled unit (:class:`UnitIndex`). The sampling rate is therefore
expected units per batch / number of units, whatever the number of examples per unit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from deniable.errors import DeniableError, InvalidParameterError, check_count, check_probability
from deniable.events import (
    Neighbouring,
    PoissonSampledEvent,
    PrivacyEvent,
    SampledWithoutReplacementEvent,
)


@dataclass(frozen=True)
class UnitIndex:
    """Which examples belong to which privacy unit.

    ``unit_of_example[i]`` is the unit (0..U−1) of example i; ``keys`` the user-facing key of
    each unit (sorted). Without keys, unit i is example i.
    """

    unit_of_example: np.ndarray
    keys: np.ndarray

    @staticmethod
    def from_keys(keys: np.ndarray | None, num_examples: int) -> UnitIndex:
        check_count("num_examples", num_examples)
        if keys is None:
            ids = np.arange(num_examples, dtype=np.int64)
            return UnitIndex(ids, ids)
        keys = np.asarray(keys)
        if keys.shape != (num_examples,):
            raise DeniableError(
                f"privacy-unit keys must have one entry per example ({num_examples}), "
                f"got shape {keys.shape}"
            )
        unique, inverse = np.unique(keys, return_inverse=True)
        return UnitIndex(inverse.astype(np.int64), unique)

    @property
    def num_units(self) -> int:
        return int(self.keys.size)

    def examples_of(self, units: np.ndarray) -> np.ndarray:
        """Indices of every example whose unit is in ``units`` (ascending)."""
        if self.num_units == self.unit_of_example.size and np.array_equal(
            self.unit_of_example, np.arange(self.num_units)
        ):
            return np.sort(units)
        return np.nonzero(np.isin(self.unit_of_example, units))[0]


class _SeededSampler:
    """A sampler's torch.Generator and the state a checkpoint keeps of it."""

    def __init__(self, seed: int) -> None:
        self.generator = torch.Generator().manual_seed(seed)

    def state_dict(self) -> dict[str, object]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, object]) -> None:
        generator_state = state["generator"]
        assert isinstance(generator_state, torch.Tensor)
        self.generator.set_state(generator_state)


class PoissonSampler(_SeededSampler):
    """Poisson sampling of units with rate ``sample_rate``, from a seeded torch.Generator."""

    relation = Neighbouring.ADD_REMOVE

    def __init__(self, num_units: int, sample_rate: float, *, seed: int) -> None:
        super().__init__(seed)
        self.num_units = check_count("num_units", num_units)
        self.sample_rate = check_probability("sample_rate", sample_rate)

    @property
    def expected_batch_units(self) -> float:
        return self.sample_rate * self.num_units

    def sample(self) -> np.ndarray:
        """The units in the next batch (possibly none)."""
        draws = torch.rand(self.num_units, generator=self.generator)
        return torch.nonzero(draws < self.sample_rate).flatten().numpy()

    def event(self, step: PrivacyEvent) -> PrivacyEvent:
        return PoissonSampledEvent(self.sample_rate, step)


class FixedSizeSampler(_SeededSampler):
    """A uniformly random subset of exactly ``batch_units`` units per step."""

    relation = Neighbouring.REPLACE_ONE

    def __init__(self, num_units: int, batch_units: int, *, seed: int) -> None:
        super().__init__(seed)
        self.num_units = check_count("num_units", num_units)
        self.batch_units = check_count("batch_units", batch_units)
        if batch_units > num_units:
            raise InvalidParameterError("batch_units", batch_units, f"<= {num_units} units")

    @property
    def sample_rate(self) -> float:
        return self.batch_units / self.num_units

    @property
    def expected_batch_units(self) -> float:
        return float(self.batch_units)

    def sample(self) -> np.ndarray:
        perm = torch.randperm(self.num_units, generator=self.generator)
        return torch.sort(perm[: self.batch_units]).values.numpy()

    def event(self, step: PrivacyEvent) -> PrivacyEvent:
        return SampledWithoutReplacementEvent(self.num_units, self.batch_units, step)


Sampler = PoissonSampler | FixedSizeSampler
