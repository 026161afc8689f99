"""Multi-process DP-SGD on torch.distributed (gloo): one logical step, noise added once.

Every rank runs the *same* Poisson sampler (same seed) over all U units, so every rank draws the
same global batch B and the accountant's q is the global rate. Rank r takes the units of B whose
clipping group (the unit, or its microbatch) is ≡ r mod W, so a rank only ever reads its own
shard of the data. One step is, in this order:

1. **clip** (every rank): s_r = Σ_{u∈B, u≡r} clip_C(g_u), with no noise
   (:func:`~deniable.distributed.clipped.clipped_sum`);
2. **exchange** (all-reduce of a small status vector): did any rank fail (a non-finite gradient,
   an exception)? If so every rank refuses the step with one error naming the rank: nothing is
   recorded and no parameter changes;
3. **sum** (reduce to rank 0): s = Σ_r s_r, seen by rank 0 only;
4. **noise** (rank 0 only, once): ĝ = (s + N(0, σ²C²·I)) / (q·U), q·U the *expected* batch size;
5. **record** (rank 0): the step's event ``PoissonSampledEvent(q, GaussianEvent(σC, C))``, the
   same one :class:`~deniable.train.private.PrivateTraining` records;
6. **release** (broadcast from rank 0): every rank receives the same ĝ, records the same event
   and applies the same optimizer update, so the replicas stay bit-identical
   (:meth:`DistributedPrivateTraining.verify_replicas` checks it).

Why nothing is released unrecorded: the only output that leaves the trust boundary of the sum is
ĝ, and rank 0 records the event (5) before ĝ leaves rank 0 (6). If a rank dies during the
broadcast, rank 0's record holds a step whose update may not have been applied everywhere: an
over-count, never an under-count. A failure before (5) leaves no record and no update. Rank 0's
tracker is the authoritative one; the others record after receiving ĝ, so they match it on every
completed step. The un-noised per-rank sums travel only to rank 0 (trusted, like the
single-process trainer), which is why (3) is a reduce and not an all-reduce; the status vector
carries counts and losses that every rank may see (the same non-private statistics
:class:`~deniable.train.dp_step.StepStats` reports), and the refusal of a step whose gradient is
not finite is the same observable error the single-process step raises.

The seeds are those of :func:`~deniable.train.private.make_private`: sampler ``seed`` on every
rank, noise ``seed + 1`` on rank 0 (None: rank 0 draws the sampler seed from the OS and shares
it; the noise stays OS-seeded on rank 0). With the same seed, model and data, W workers compute
the same model as one process, up to the order of floating-point additions.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from deniable.accounting.result import EpsilonResult
from deniable.distributed.clipped import ClippedSum, clipped_sum
from deniable.distributed.group import Group, agree, shared_seed
from deniable.errors import DeniableError, check_count
from deniable.events import PrivacyEvent
from deniable.train.dp_step import Clipping, LossFn, StepStats, step_event
from deniable.train.noise import NoiseSource
from deniable.train.privacy_tracker import PrivacyTracker
from deniable.train.private import checked_units, resolve_noise_multiplier
from deniable.train.sampler import PoissonSampler, UnitIndex


class WorkerLostError(DeniableError):
    """A collective failed: another rank died, was killed or timed out. The message says whether
    rank 0 had recorded the step's event: it records it before it can release the update, so a
    failure during the release over-counts that step at worst."""


@dataclass(frozen=True)
class ShardBatch:
    """This rank's share of logical batch ``step``: the examples of its units."""

    inputs: torch.Tensor
    targets: torch.Tensor
    units: torch.Tensor
    step: int


class DistributedPrivateTraining:
    """One rank of a multi-process DP-SGD run; see the module docstring for the protocol.

    Every rank must be built with the same settings and data (:func:`make_distributed_private`
    checks it); the constructor copies rank 0's parameters and buffers to every rank.
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        loss_fn: LossFn,
        inputs: torch.Tensor,
        targets: torch.Tensor,
        *,
        group: Group,
        units: UnitIndex,
        sampler: PoissonSampler,
        clipping: Clipping,
        noise_multiplier: float,
        noise: NoiseSource | None,
        unit_name: str = "example",
        physical_batch_units: int | None = None,
    ) -> None:
        if group.is_leader and noise is None:
            raise DeniableError("rank 0 draws the noise: give it a NoiseSource")
        if not group.is_leader and noise is not None:
            raise DeniableError(f"rank {group.rank} must not hold a NoiseSource; only rank 0 does")
        self.model = model
        self.optimizer = optimizer
        self.loss_fn = loss_fn
        self.inputs = inputs
        self.targets = targets
        self.group = group
        self.units = units
        self.sampler = sampler
        self.clipping = clipping
        self.noise_multiplier = noise_multiplier
        self.noise = noise
        self.physical_batch_units = physical_batch_units
        self.tracker = PrivacyTracker(sampler.relation, unit_name)
        self.steps_done = 0
        self._drawn = 0
        self._params = {n: p for n, p in model.named_parameters() if p.requires_grad}
        dtypes = {p.dtype for p in self._params.values()}
        if len(dtypes) != 1:
            kinds = sorted(map(str, dtypes))
            raise DeniableError(f"trainable parameters must share one dtype, got {kinds}")
        self._dtype = dtypes.pop()
        self._failure: BaseException | None = None
        self._sync_from_leader()

    @property
    def rank(self) -> int:
        return self.group.rank

    @property
    def world_size(self) -> int:
        return self.group.world_size

    @property
    def sample_rate(self) -> float:
        return self.sampler.sample_rate

    def step_event(self) -> PrivacyEvent:
        """The event of one logical step (sampling included): the single-process one."""
        return self.sampler.event(step_event(self.clipping, self.noise_multiplier))

    def batches(
        self, *, epochs: float | None = None, steps: int | None = None
    ) -> Iterator[ShardBatch]:
        """This rank's shards of the global batches, for ``steps`` or ``epochs``·(1/q) steps."""
        if (epochs is None) == (steps is None):
            raise DeniableError("give exactly one of epochs or steps")
        total = steps if steps is not None else math.ceil((epochs or 0) / self.sample_rate)
        for _ in range(check_count("steps", total)):
            chosen = self.sampler.sample()
            mine = chosen[self._shard_of(chosen) == self.rank]
            index = self.units.examples_of(mine)
            unit_ids = torch.as_tensor(self.units.unit_of_example[index], dtype=torch.long)
            index_t = torch.as_tensor(index, dtype=torch.long)
            self._drawn += 1
            yield ShardBatch(self.inputs[index_t], self.targets[index_t], unit_ids, self._drawn - 1)

    def _shard_of(self, units: np.ndarray) -> np.ndarray:
        groups = (
            units
            if self.clipping.microbatch_size is None
            else (units // self.clipping.microbatch_size)
        )
        return np.asarray(groups % self.world_size)

    def step(self, batch: ShardBatch) -> StepStats:
        """One logical DP-SGD step (collective: every rank calls it with its shard of the batch).

        Returns the global statistics of the step (same on every rank). Raises
        :class:`DeniableError` on every rank when a rank's clipped gradient is not finite or a
        rank raised (nothing recorded, nothing updated), :class:`WorkerLostError` when a peer is
        gone.
        """
        if batch.step != self.steps_done:
            raise DeniableError(
                f"batch {batch.step} is not the next batch ({self.steps_done}); "
                "take batches from this training's batches() in order"
            )
        self.model.train()
        local, status = self._clip(batch)
        totals = self._exchange(status)
        flat = self._flatten(local)
        self._collective(lambda: dist.reduce(flat, dst=0), recorded=False)
        release = torch.empty(flat.numel() + 1, dtype=self._dtype)
        if self.group.is_leader:
            release[:-1] = self._noised(flat)
            release[-1] = 1.0 if bool(torch.isfinite(release[:-1]).all()) else 0.0
            if release[-1] == 1.0:
                self.tracker.record(self.step_event())  # before ĝ leaves rank 0
        self._collective(lambda: dist.broadcast(release, src=0), recorded=True)
        if release[-1] != 1.0:
            raise DeniableError(
                f"step {self.steps_done} refused: the summed clipped gradient is not finite; "
                "nothing was recorded or applied (lower the learning rate)"
            )
        if not self.group.is_leader:
            self.tracker.record(self.step_event())
        self._apply(release[:-1])
        self.steps_done += 1
        units, clipped, loss, examples = totals
        return StepStats(
            int(units), clipped / units if units else 0.0, loss / max(1.0, examples), local.method
        )

    def _clip(self, batch: ShardBatch) -> tuple[ClippedSum, torch.Tensor]:
        """This rank's clipped sum and status vector [failed per rank…, units, clipped, loss,
        examples]; a failure is kept in ``self._failure`` and reported in :meth:`_exchange`."""
        status = torch.zeros(self.world_size + 4, dtype=torch.float64)
        self._failure = None
        try:
            local = clipped_sum(
                self.model,
                self.loss_fn,
                batch.inputs,
                batch.targets,
                batch.units,
                clipping=self.clipping,
                physical_batch_units=self.physical_batch_units,
            )
            if not all(bool(torch.isfinite(v).all()) for v in local.summed.values()):
                raise DeniableError("its clipped gradient sum is not finite")
        except Exception as error:  # reported to every rank, then raised everywhere
            status[self.rank] = 1.0
            self._failure = error
            empty = {n: torch.zeros_like(p) for n, p in self._params.items()}
            return ClippedSum(empty, 0, 0.0, 0.0, 0, "none"), status
        status[-4:] = torch.tensor(
            [local.units, local.clipped_units, local.loss_total, local.examples],
            dtype=torch.float64,
        )
        return local, status

    def _exchange(self, status: torch.Tensor) -> tuple[float, float, float, float]:
        self._collective(lambda: dist.all_reduce(status), recorded=False)
        failed = [r for r in range(self.world_size) if status[r] != 0]
        if failed:
            self._refuse(failed)
        units, clipped, loss, examples = (float(v) for v in status[-4:])
        return units, clipped, loss, examples

    def _refuse(self, failed: list[int]) -> None:
        own = self._failure
        text = None if own is None else f"{type(own).__name__}: {_first_line(own)}"
        messages: list[object] = [None] * self.world_size
        self._collective(lambda: dist.all_gather_object(messages, text), recorded=False)
        first = failed[0]
        raise DeniableError(
            f"step {self.steps_done} refused: rank {first} failed ({messages[first]}); "
            "nothing was recorded or applied"
        ) from own

    def _collective(self, call: Callable[[], object], *, recorded: bool) -> None:
        try:
            call()
        except (RuntimeError, OSError) as error:
            spent = (
                "rank 0 recorded this step's event before releasing the update (an over-count "
                "at worst)"
                if recorded
                else "nothing was recorded for this step"
            )
            raise WorkerLostError(
                f"rank {self.rank}: lost contact with another rank during step {self.steps_done} "
                f"({_first_line(error)}); {spent}"
            ) from None

    def _flatten(self, local: ClippedSum) -> torch.Tensor:
        return torch.cat([local.summed[n].reshape(-1).to(self._dtype) for n in self._params])

    def _views(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        out, offset = {}, 0
        for name, param in self._params.items():
            out[name] = flat[offset : offset + param.numel()].view_as(param)
            offset += param.numel()
        return out

    def _noised(self, flat: torch.Tensor) -> torch.Tensor:
        """(s + N(0, σ²C²)) / (q·U), the noise drawn per parameter tensor in the order of
        ``noisy_gradient`` so one process and W processes use the same noise."""
        assert self.noise is not None
        std = self.noise_multiplier * self.clipping.max_grad_norm
        expected = self.sampler.expected_batch_units
        parts = [
            (value + self.noise.gaussian_like(value, std)) / expected
            for value in self._views(flat).values()
        ]
        return torch.cat([p.reshape(-1) for p in parts])

    def _apply(self, flat: torch.Tensor) -> None:
        for name, value in self._views(flat).items():
            self._params[name].grad = value.clone()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def _sync_from_leader(self) -> None:
        for tensor in [*self.model.parameters(), *self.model.buffers()]:
            data = tensor.detach()
            dist.broadcast(data, src=0)

    def verify_replicas(self) -> None:
        """Raise on every rank unless all ranks hold bit-identical parameters and buffers.

        Collective. Compares a SHA-256 digest of each rank's model with rank 0's.
        """
        digest = torch.tensor([model_digest(self.model)], dtype=torch.int64)
        gathered = [torch.zeros_like(digest) for _ in range(self.world_size)]
        self._collective(lambda: dist.all_gather(gathered, digest), recorded=False)
        differ = [r for r, d in enumerate(gathered) if int(d) != int(gathered[0])]
        if differ:
            raise DeniableError(
                f"model replicas diverged: rank(s) {differ} differ from rank 0 after step "
                f"{self.steps_done}; every rank must apply the same optimizer to the same model"
            )

    def epsilon(self, delta: float, accountant: str = "pld") -> EpsilonResult:
        """ε spent so far, from this rank's recorded events (rank 0's is authoritative)."""
        return self.tracker.epsilon(delta, accountant)

    def state_dict(self) -> dict[str, object]:
        """This rank's state; rank 0's holds the noise generator (seeded mode) and is the one
        to save. Every rank loads the same dict; ranks other than 0 skip the noise."""
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "sampler": self.sampler.state_dict(),
            "noise": None if self.noise is None else self.noise.state_dict(),
            "tracker": self.tracker.state_dict(),
            "steps_done": self.steps_done,
        }

    def load_state_dict(self, state: dict[str, object]) -> None:
        self.model.load_state_dict(state["model"])  # type: ignore[arg-type]
        self.optimizer.load_state_dict(state["optimizer"])  # type: ignore[arg-type]
        self.sampler.load_state_dict(state["sampler"])  # type: ignore[arg-type]
        if self.noise is not None:
            noise_state = state["noise"]
            if not isinstance(noise_state, dict):
                raise DeniableError("this checkpoint has no noise state: save rank 0's state")
            self.noise.load_state_dict(noise_state)
        self.tracker.load_state_dict(state["tracker"])  # type: ignore[arg-type]
        steps = state["steps_done"]
        assert isinstance(steps, int)
        self.steps_done = steps
        self._drawn = steps


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0][:200] if lines else type(error).__name__


def model_digest(model: nn.Module) -> int:
    """A 63-bit digest of every parameter and buffer's bytes (bit-identical models only match)."""
    sha = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        sha.update(name.encode())
        sha.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
    return int.from_bytes(sha.digest()[:8], "little") >> 1


def data_digest(*arrays: torch.Tensor | np.ndarray | None) -> str:
    """SHA-256 of the arrays' bytes: every rank must hold the same dataset."""
    sha = hashlib.sha256()
    for array in arrays:
        if array is None:
            sha.update(b"none")
            continue
        values = array.detach().cpu().numpy() if isinstance(array, torch.Tensor) else array
        sha.update(str(values.dtype).encode() + str(values.shape).encode())
        sha.update(np.ascontiguousarray(values).tobytes())
    return sha.hexdigest()


def make_distributed_private(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: LossFn,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    *,
    group: Group,
    batch_size: int,
    max_grad_norm: float,
    noise_multiplier: float | None = None,
    target_epsilon: float | None = None,
    delta: float | None = None,
    epochs: float | None = None,
    keys: np.ndarray | None = None,
    per_layer_clipping: bool = False,
    microbatch_size: int | None = None,
    physical_batch_size: int | None = None,
    seed: int | None = None,
    allow_unverified_layers: bool = False,
) -> DistributedPrivateTraining:
    """:func:`~deniable.train.private.make_private` for one rank of a W-rank run (Poisson only).

    Collective: every rank calls it with the same arguments and the same data (checked: a
    difference raises on every rank, naming the rank and the setting). ``batch_size`` is the
    expected number of units per *global* batch, q = batch_size / U.
    """
    units = checked_units(model, inputs, targets, keys, batch_size, allow_unverified_layers)
    count = units.num_units
    clipping = Clipping(max_grad_norm, per_layer_clipping, microbatch_size)
    agree(
        group,
        {
            "world_size": group.world_size,
            "units": count,
            "batch_size": batch_size,
            "clipping": repr(clipping),
            "noise_multiplier": noise_multiplier,
            "target": repr((target_epsilon, delta, epochs)),
            "seeded": seed is not None,
            "seed": seed,
            "data": data_digest(inputs, targets, keys),
            "parameters": repr([(k, tuple(v.shape)) for k, v in model.state_dict().items()]),
        },
    )
    sampler = PoissonSampler(count, batch_size / count, seed=shared_seed(group, seed))
    sigma = resolve_noise_multiplier(
        noise_multiplier, target_epsilon, delta, epochs, sampler, clipping
    )
    noise = None
    if group.is_leader:
        noise = NoiseSource(None if seed is None else seed + 1)
    return DistributedPrivateTraining(
        model,
        optimizer,
        loss_fn,
        inputs,
        targets,
        group=group,
        units=units,
        sampler=sampler,
        clipping=clipping,
        noise_multiplier=sigma,
        noise=noise,
        unit_name="example" if keys is None else "key",
        physical_batch_units=physical_batch_size,
    )
