"""DP-FedAvg in simulation: user-level clipping, noise once per round, adaptive clipping, dropped
and rejected clients, and ε from the accountant. Statistical checks use fixed seeds and state
their false-failure rates."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn

from deniable import accounting
from deniable.accounting.calibrate import dpsgd_event
from deniable.data import load_dataset
from deniable.distributed.clipping import (
    AdaptiveClipping,
    FixedClipping,
    update_noise_multiplier,
)
from deniable.distributed.fedavg import DPFedAvg, DPFedAvgAggregator, LocalSGDClient
from deniable.errors import DeniableError
from deniable.events import GaussianEvent, PoissonSampledEvent
from deniable.train.trainer import accuracy

DELTA = 1e-5


@pytest.fixture(scope="module")
def federation() -> tuple[list[LocalSGDClient], object]:
    """The digits training split dealt out to 40 clients (about 36 examples each)."""
    split = load_dataset("digits")
    x, y = split.train.to_tensors()
    parts = np.array_split(np.random.default_rng(0).permutation(len(y)), 40)
    clients = [
        LocalSGDClient(x[p], y[p], local_steps=5, learning_rate=0.5, seed=i)
        for i, p in enumerate(parts)
    ]
    return clients, split.test


def logreg() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 10))


def effective_noise_multiplier(z: float, sigma_b: float) -> float:
    """Andrew et al. 2021, Thm. 1: updates at z and the count at σ_b act as one Gaussian."""
    return (z**-2 + (2 * sigma_b) ** -2) ** -0.5


@pytest.mark.parametrize(
    "clipping",
    [FixedClipping(0.5), AdaptiveClipping(0.1, target_quantile=0.5, count_noise_std=1.0)],
    ids=["fixed", "adaptive"],
)
def test_accuracy_improves_over_rounds_and_epsilon_is_the_accountants(
    federation: tuple[list[LocalSGDClient], object], clipping: FixedClipping | AdaptiveClipping
) -> None:
    clients, test = federation
    model = logreg()
    z, q, rounds = 1.0, 0.5, 20
    server = DPFedAvg(model, clients, sample_rate=q, noise_multiplier=z, clipping=clipping, seed=0)
    before = accuracy(model, test)  # type: ignore[arg-type]
    curve = []
    for _ in range(rounds):
        server.round()
        curve.append(accuracy(model, test))  # type: ignore[arg-type]
    assert before < 0.2
    assert np.mean(curve[-5:]) > 0.75
    assert np.mean(curve[-5:]) > np.mean(curve[:5])
    z_eff = z if isinstance(clipping, FixedClipping) else effective_noise_multiplier(z, 1.0)
    expected = accounting.epsilon(dpsgd_event(z_eff, q, rounds), DELTA).epsilon
    spent = server.epsilon(DELTA)
    assert spent.epsilon == pytest.approx(expected, rel=1e-9)
    assert server.tracker.steps == rounds and server.tracker.unit == "client"


def test_sum_is_clipped_per_client_and_noised_once_with_expected_denominator() -> None:
    d, k, norm, z, q = 500, 8, 1.0, 2.0, 1.0
    g = torch.Generator().manual_seed(3)
    directions = [v / v.norm() for v in torch.randn(k, d, generator=g)]
    updates = [
        {"w": v * s} for v, s in zip(directions, (0.2, 0.5, 0.9, 2, 3, 5, 8, 13), strict=True)
    ]
    aggregator = DPFedAvgAggregator(
        num_clients=k, sample_rate=q, noise_multiplier=z, clipping=FixedClipping(norm), seed=1
    )
    assert len(aggregator.sample()) == k  # q = 1: everyone
    average, round_stats = aggregator.aggregate({"w": torch.zeros(d)}, updates)
    clipped = sum(u["w"] * min(1.0, norm / float(u["w"].norm())) for u in updates)
    residual = average["w"] * (q * k) - clipped
    # The residual must be N(0, (zS)²) per coordinate: KS at false-failure rate 1e-3.
    assert stats.kstest(residual.numpy(), stats.norm(scale=z * norm).cdf).pvalue > 1e-3
    assert round_stats.clipped == 5 and round_stats.sampled == k
    assert aggregator.tracker.event() == PoissonSampledEvent(q, GaussianEvent(z * norm, norm))


def test_dropped_and_bad_updates_contribute_nothing_and_do_not_change_epsilon(
    caplog: pytest.LogCaptureFixture,
) -> None:
    template = {"w": torch.zeros(3), "b": torch.zeros(1)}
    good = {"w": torch.tensor([0.3, 0.0, 0.4]), "b": torch.tensor([0.1])}
    nan = {"w": torch.tensor([math.nan, 0.0, 0.0]), "b": torch.tensor([0.0])}
    misshapen = {"w": torch.zeros(4), "b": torch.zeros(1)}

    def run(updates: list[dict[str, torch.Tensor] | None]) -> tuple[dict, object, float]:
        aggregator = DPFedAvgAggregator(
            num_clients=4, sample_rate=1.0, noise_multiplier=0.7, clipping=FixedClipping(1), seed=5
        )
        aggregator.sample()
        average, round_stats = aggregator.aggregate(template, updates)
        return average, round_stats, aggregator.epsilon(DELTA).epsilon

    with caplog.at_level(logging.WARNING, logger="deniable.distributed.fedavg"):
        messy = run([good, None, nan, misshapen])
    clean = run([good, None, None, None])
    for name in template:
        assert torch.equal(messy[0][name], clean[0][name])  # same noise, same valid sum
    assert (messy[1].dropped, messy[1].rejected) == (1, 2)  # type: ignore[attr-defined]
    assert messy[2] == clean[2]  # ε is that of the round, whoever answered
    assert "client 2 rejected: w is not finite" in caplog.text
    assert "client 3 rejected: w has shape" in caplog.text


def test_a_crashing_client_is_a_dropped_client() -> None:
    class Crashing:
        def update(self, model: nn.Module) -> None:
            raise RuntimeError("battery died")

    model = logreg()
    server = DPFedAvg(model, [Crashing()] * 3, sample_rate=1.0, noise_multiplier=1.0, seed=0)
    round_stats = server.round()
    assert round_stats.dropped == 3 and server.tracker.steps == 1


def test_adaptive_clip_tracks_the_target_quantile() -> None:
    # 20 clients with update norms 1..20, all sampled: the median is 10.5.
    template = {"w": torch.zeros(2)}
    updates = [{"w": torch.tensor([float(n), 0.0])} for n in range(1, 21)]
    clipping = AdaptiveClipping(0.5, target_quantile=0.5, learning_rate=0.2, count_noise_std=0.5)
    aggregator = DPFedAvgAggregator(
        num_clients=20, sample_rate=1.0, noise_multiplier=1.0, clipping=clipping, seed=0
    )
    for _ in range(80):
        aggregator.sample()
        _, round_stats = aggregator.aggregate(template, updates)
    assert 8.0 <= aggregator.clip_norm <= 13.0
    assert round_stats.clip_norm == pytest.approx(aggregator.clip_norm, rel=0.25)  # settled
    # however S moved, every round is the same event (stated in units of S): one run
    assert len(aggregator.tracker.state_dict()["runs"]) == 1  # type: ignore[arg-type]


def test_adaptive_event_is_andrew_et_al_and_update_noise_inverts_it() -> None:
    z, sigma_b = 1.3, 2.0
    event = AdaptiveClipping(1.0, count_noise_std=sigma_b).event(z)
    assert event.noise_multiplier() == pytest.approx(effective_noise_multiplier(z, sigma_b))
    z_updates = update_noise_multiplier(z, sigma_b)
    combined = AdaptiveClipping(1.0, count_noise_std=sigma_b).event(z_updates)
    assert combined.noise_multiplier() == pytest.approx(z)
    with pytest.raises(DeniableError, match=r"count_noise_std 0\.5 is too small"):
        update_noise_multiplier(1.0, 0.5)


def test_aggregator_refuses_misuse() -> None:
    aggregator = DPFedAvgAggregator(
        num_clients=5, sample_rate=0.5, noise_multiplier=1.0, clipping=FixedClipping(1.0), seed=0
    )
    with pytest.raises(DeniableError, match="call sample"):
        aggregator.aggregate({"w": torch.zeros(1)}, [])
    chosen = aggregator.sample()
    with pytest.raises(DeniableError, match="already sampled"):
        aggregator.sample()
    with pytest.raises(DeniableError, match="pass None for a client that dropped"):
        aggregator.aggregate({"w": torch.zeros(1)}, [None] * (len(chosen) + 1))
    assert aggregator.tracker.steps == 0
    with pytest.raises(DeniableError, match="target_quantile"):
        AdaptiveClipping(1.0, target_quantile=1.0)
