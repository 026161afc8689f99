"""DP-FedAvg (McMahan, Ramage, Talwar & Zhang 2018): user-level DP federated averaging.

Each round the server

1. **samples** clients: each of the K clients independently with probability q (Poisson), so
   the accountant's amplification applies with the client as the privacy unit;
2. **collects** each sampled client's update Δ_k = θ_k − θ (a few local SGD steps from the
   global θ). A client that drops out, crashes or sends nothing contributes nothing; an update
   that is not finite or has the wrong shape is rejected (logged) and contributes nothing;
3. **clips** every update to ‖Δ_k‖ ≤ S (flat L2 over all parameters), so one client moves the
   sum by at most S (:mod:`deniable.distributed.clipping`, fixed or adaptive S);
4. **noises** the sum once: Σ_k clip_S(Δ_k) + N(0, z²S²·I), and divides by the *expected*
   number of clients q·K (the fixed-denominator estimator of McMahan et al.; dividing by the
   realised count would leak it);
5. **records** the round's event ``PoissonSampledEvent(q, GaussianEvent(zS, S))`` (adaptive
   clipping: the update and the noisy count as one Gaussian, see ``clipping``), then releases
   the averaged update; θ ← θ + η_s · Δ̄.

Dropped and rejected clients do not change ε: the sampling (and the round's release) happened
whatever they sent, and "contributes nothing" is within the sensitivity bound. The privacy claim
is user-level, add/remove-one *client*; every ε comes from the recorded events.

:class:`DPFedAvgAggregator` holds steps 1, 3–5 and knows nothing about models or transport, so
an FL framework can drive it (:mod:`deniable.distributed.flower`); :class:`DPFedAvg` runs the
whole loop in simulation with in-process :class:`LocalSGDClient`\\ s.
"""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from torch import Tensor, nn

from deniable.accounting.result import EpsilonResult
from deniable.distributed.clipping import AdaptiveClipping, Clipping, FixedClipping
from deniable.errors import DeniableError, check_count, check_positive
from deniable.events import PrivacyEvent
from deniable.grad.clip import clip_factors
from deniable.train.dp_step import LossFn
from deniable.train.noise import NoiseSource
from deniable.train.privacy_tracker import PrivacyTracker
from deniable.train.sampler import PoissonSampler

logger = logging.getLogger(__name__)

Update = Mapping[str, Tensor]


@dataclass(frozen=True)
class RoundStats:
    """What one round did. ``sampled`` and the outcome counts are the server's own diagnostics
    (not differentially private: keep them inside the server); ``clip_norm`` (S used this
    round) and ``next_clip_norm`` are computed from released values only."""

    round: int
    sampled: int
    dropped: int
    rejected: int
    clipped: int
    clip_norm: float
    next_clip_norm: float


class DPFedAvgAggregator:
    """Server side of DP-FedAvg without a model: sample, clip, sum, noise, record.

    Call :meth:`sample` then :meth:`aggregate` once per round. ``seed`` seeds the sampler
    (``seed``) and the noise (``seed + 1``); None draws both from the OS CSPRNG.
    """

    def __init__(
        self,
        *,
        num_clients: int,
        sample_rate: float,
        noise_multiplier: float,
        clipping: Clipping,
        seed: int | None = None,
    ) -> None:
        self.num_clients = check_count("num_clients", num_clients)
        self.noise_multiplier = check_positive("noise_multiplier", noise_multiplier)
        self.clipping = clipping
        sampler_seed = seed if seed is not None else int.from_bytes(os.urandom(8), "little")
        self.sampler = PoissonSampler(num_clients, sample_rate, seed=sampler_seed)
        self.noise = NoiseSource(None if seed is None else seed + 1)
        self.tracker = PrivacyTracker(self.sampler.relation, "client")
        self.clip_norm = clipping.initial_norm
        self.rounds_done = 0
        self._pending: np.ndarray | None = None

    @property
    def sample_rate(self) -> float:
        return self.sampler.sample_rate

    @property
    def expected_clients(self) -> float:
        return self.sampler.expected_batch_units

    def round_event(self) -> PrivacyEvent:
        """The event of one round (sampling included)."""
        return self.sampler.event(self.clipping.event(self.noise_multiplier))

    def sample(self) -> np.ndarray:
        """The clients (indices 0..K−1) of the next round; each joins with probability q."""
        if self._pending is not None:
            raise DeniableError("this round's clients were already sampled; aggregate first")
        self._pending = self.sampler.sample()
        return self._pending

    def aggregate(
        self, template: Update, updates: Sequence[Update | None]
    ) -> tuple[dict[str, Tensor], RoundStats]:
        """The noised average update Δ̄ of this round's sampled clients.

        ``updates`` has one entry per sampled client, None for a client that sent nothing.
        ``template`` gives the parameter names and shapes. Records the round's event before
        returning Δ̄ (the release).
        """
        if self._pending is None:
            raise DeniableError("call sample() before aggregate(): the round has no clients yet")
        if len(updates) != len(self._pending):
            raise DeniableError(
                f"got {len(updates)} updates for {len(self._pending)} sampled clients; "
                "pass None for a client that dropped out"
            )
        norm = self.clip_norm
        summed = {n: torch.zeros_like(t, dtype=torch.float32) for n, t in template.items()}
        dropped = rejected = clipped = 0
        centred_count = 0.0
        for client, update in zip(self._pending.tolist(), updates, strict=True):
            if update is None:
                dropped += 1
                continue
            problem = _problem(update, template)
            if problem is not None:
                rejected += 1
                logger.warning(
                    "round %d: update of client %d rejected: %s", self.rounds_done, client, problem
                )
                continue
            flat_norm = torch.stack([update[n].double().square().sum() for n in template]).sum()
            flat_norm = flat_norm.sqrt()
            factor = float(clip_factors(flat_norm.reshape(1), norm)[0])
            clipped += int(float(flat_norm) > norm)
            centred_count += (1.0 if float(flat_norm) <= norm else 0.0) - 0.5
            for name in template:
                summed[name] += factor * update[name].to(torch.float32)
        if clipped:
            logger.debug("round %d: %d update(s) clipped to %g", self.rounds_done, clipped, norm)
        std = self.noise_multiplier * norm
        expected = self.expected_clients
        average = {n: (v + self.noise.gaussian_like(v, std)) / expected for n, v in summed.items()}
        next_norm = norm
        if isinstance(self.clipping, AdaptiveClipping):
            count_noise = float(
                self.noise.gaussian_like(torch.zeros(1), self.clipping.count_noise_std)[0]
            )
            next_norm = self.clipping.next_norm(norm, centred_count + count_noise, expected)
        self.tracker.record(self.round_event())  # before Δ̄ is released
        stats = RoundStats(
            self.rounds_done, len(self._pending), dropped, rejected, clipped, norm, next_norm
        )
        self.clip_norm = next_norm
        self.rounds_done += 1
        self._pending = None
        return average, stats

    def epsilon(self, delta: float, accountant: str = "pld") -> EpsilonResult:
        """User-level ε (add/remove-one client) of the rounds aggregated so far."""
        return self.tracker.epsilon(delta, accountant)


def _problem(update: Update, template: Update) -> str | None:
    if set(update) != set(template):
        return f"parameters {sorted(set(update) ^ set(template))} missing or unexpected"
    for name, reference in template.items():
        value = update[name]
        if not isinstance(value, Tensor) or value.shape != reference.shape:
            shape = getattr(value, "shape", type(value).__name__)
            return f"{name} has shape {shape}, expected {tuple(reference.shape)}"
        if not bool(torch.isfinite(value).all()):
            return f"{name} is not finite"
    return None


class Client(Protocol):
    """A participant: returns its update Δ = θ_local − θ for the global ``model``, or None
    when it drops out. It must not modify ``model``."""

    def update(self, model: nn.Module) -> Update | None: ...


class LocalSGDClient:
    """A simulated client holding (``inputs``, ``targets``): ``local_steps`` of plain SGD with
    minibatches of ``batch_size`` (None: all its data) from the global model."""

    def __init__(
        self,
        inputs: Tensor,
        targets: Tensor,
        *,
        loss_fn: LossFn = nn.functional.cross_entropy,
        local_steps: int = 5,
        learning_rate: float = 0.1,
        batch_size: int | None = None,
        seed: int = 0,
    ) -> None:
        self.inputs = inputs
        self.targets = targets
        self.loss_fn = loss_fn
        self.local_steps = check_count("local_steps", local_steps)
        self.learning_rate = check_positive("learning_rate", learning_rate)
        self.batch_size = batch_size
        self.generator = torch.Generator().manual_seed(seed)

    def update(self, model: nn.Module) -> dict[str, Tensor]:
        local = copy.deepcopy(model)
        local.train()
        optimizer = torch.optim.SGD(local.parameters(), lr=self.learning_rate)
        n = len(self.targets)
        for _ in range(self.local_steps):
            if self.batch_size is None or self.batch_size >= n:
                x, y = self.inputs, self.targets
            else:
                index = torch.randperm(n, generator=self.generator)[: self.batch_size]
                x, y = self.inputs[index], self.targets[index]
            optimizer.zero_grad()
            self.loss_fn(local(x), y).backward()
            optimizer.step()
        start = dict(model.named_parameters())
        return {
            name: (p.detach() - start[name].detach())
            for name, p in local.named_parameters()
            if p.requires_grad
        }


class DPFedAvg:
    """DP-FedAvg in simulation: a global ``model``, K ``clients``, one :meth:`round` at a time.

    ``server_learning_rate`` η_s scales the noised average update (1.0: plain FedAvg).
    """

    def __init__(
        self,
        model: nn.Module,
        clients: Sequence[Client],
        *,
        sample_rate: float,
        noise_multiplier: float,
        clipping: Clipping | None = None,
        server_learning_rate: float = 1.0,
        seed: int | None = None,
    ) -> None:
        self.model = model
        self.clients = list(clients)
        self.server_learning_rate = check_positive("server_learning_rate", server_learning_rate)
        self.aggregator = DPFedAvgAggregator(
            num_clients=len(self.clients),
            sample_rate=sample_rate,
            noise_multiplier=noise_multiplier,
            clipping=clipping if clipping is not None else FixedClipping(1.0),
            seed=seed,
        )

    @property
    def tracker(self) -> PrivacyTracker:
        return self.aggregator.tracker

    def round(self) -> RoundStats:
        """Sample, collect, clip, noise, record, update the global model."""
        chosen = self.aggregator.sample()
        updates = [self._collect(int(k)) for k in chosen]
        params = {n: p for n, p in self.model.named_parameters() if p.requires_grad}
        template = {n: p.detach() for n, p in params.items()}
        average, stats = self.aggregator.aggregate(template, updates)
        with torch.no_grad():
            for name, param in params.items():
                param.add_(average[name].to(param.dtype), alpha=self.server_learning_rate)
        return stats

    def _collect(self, client: int) -> Update | None:
        try:
            return self.clients[client].update(self.model)
        except Exception as error:  # a crashing client is a dropped client
            logger.warning("client %d failed (%s); treated as dropped", client, error)
            return None

    def epsilon(self, delta: float, accountant: str = "pld") -> EpsilonResult:
        """User-level ε so far (add/remove-one client), from the recorded rounds."""
        return self.aggregator.epsilon(delta, accountant)
