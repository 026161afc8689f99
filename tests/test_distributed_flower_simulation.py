"""DP-FedAvg in Flower's simulation engine (Ray actors) on 10 partitions of UCI Adult.

Skipped without Flower's simulation extra (``deniable[fl]`` brings flwr[simulation] and Ray).
One simulation (module fixture, ~20 s on 2 cores, Ray start included) serves the checks: it
learns, its ε is dp-accounting's, and it equals the in-process :class:`DPFedAvg` with the same
seed — the strategy samples and noises with the same seeded generators, the simulation pins
client k to Flower's partition k (node ids are random), and each node keeps its client's
minibatch generator in its Context between rounds, so exact equality is feasible.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterator

import numpy as np
import pytest
import torch
from dp_accounting import dp_event
from dp_accounting.pld import pld_privacy_accountant
from dp_accounting.rdp import rdp_privacy_accountant
from torch import nn

from conftest import SHARED
from deniable.data import load_adult
from deniable.distributed.clipping import FixedClipping
from deniable.distributed.fedavg import DPFedAvg, LocalSGDClient
from deniable.errors import DeniableError

pytest.importorskip("flwr.simulation", reason="Flower (deniable[fl]) is not installed")
ray = pytest.importorskip("ray", reason="Ray (deniable[fl]: flwr[simulation]) is not installed")
from deniable.distributed.flower import DPFedAvgStrategy  # noqa: E402
from deniable.distributed.flower_apps import FlowerResult  # noqa: E402
from deniable.distributed.flower_simulation import simulate_dp_fedavg  # noqa: E402

# 10 clients (200 Adult rows each), q = 0.5, z = 1, S = 1, 4 rounds. With K = 10 the user-level ε
# is necessarily large (6.7 at δ = 1e-5); the point here is the mechanism, not a useful budget.
K, PER_CLIENT, ROUNDS, Q, Z, S, SEED, DELTA = 10, 200, 4, 0.5, 1.0, 1.0, 3, 1e-5
ADULT = SHARED / "data" / "adult"


@pytest.fixture(scope="module")
def adult() -> tuple[torch.Tensor, ...]:
    if not ADULT.is_dir():
        pytest.skip(f"shared data folder {ADULT} absent")
    split = load_adult(SHARED / "data")
    x, y = split.train.to_tensors()
    test_x, test_y = split.test.to_tensors()
    return x, y, test_x[:3000], test_y[:3000]


def make_model(features: int) -> nn.Module:
    torch.manual_seed(0)
    return nn.Linear(features, 2)


def make_clients(x: torch.Tensor, y: torch.Tensor) -> list[LocalSGDClient]:
    """Client k: 200 distinct random training rows; 5 local steps on minibatches of 50."""
    rows = np.random.default_rng(0).permutation(len(y))[: K * PER_CLIENT].reshape(K, PER_CLIENT)
    return [
        LocalSGDClient(x[part], y[part], local_steps=5, learning_rate=0.5, batch_size=50, seed=k)
        for k, part in enumerate(torch.from_numpy(rows))
    ]


def make_strategy() -> DPFedAvgStrategy:
    return DPFedAvgStrategy(
        num_clients=K, sample_rate=Q, noise_multiplier=Z, clipping=FixedClipping(S), seed=SEED
    )


@pytest.fixture(scope="module")
def simulation(
    adult: tuple[torch.Tensor, ...],
) -> Iterator[tuple[FlowerResult, DPFedAvgStrategy]]:
    x, y, _, _ = adult
    strategy = make_strategy()
    model = make_model(x.shape[1])
    before = copy.deepcopy(model.state_dict())
    pythonpath = os.environ.get("PYTHONPATH")
    with pytest.MonkeyPatch.context() as patch:  # no usage reports to flower.ai from tests
        patch.setattr("flwr.supercore.telemetry.FLWR_TELEMETRY_ENABLED", "0")
        result = simulate_dp_fedavg(model, make_clients(x, y), strategy, rounds=ROUNDS)
    for name, value in model.state_dict().items():
        assert torch.equal(value, before[name])  # the caller's model is not changed
    # The Ray it started is shut down, and the PYTHONPATH Flower set for it is undone.
    assert not ray.is_initialized() and os.environ.get("PYTHONPATH") == pythonpath
    yield result, strategy


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model(x).argmax(dim=1) == y).float().mean())


def test_simulation_runs_every_round_with_client_k_on_partition_k(
    simulation: tuple[FlowerResult, DPFedAvgStrategy],
) -> None:
    result, strategy = simulation
    assert sorted(result.slots.values()) == list(range(K)) and result.slots == strategy.slots
    assert [r.round for r in result.rounds] == list(range(ROUNDS))
    assert all(r.dropped == r.rejected == 0 for r in result.rounds)  # every node answered
    assert sum(r.sampled for r in result.rounds) > 0


def test_simulated_federation_learns_adult(
    simulation: tuple[FlowerResult, DPFedAvgStrategy], adult: tuple[torch.Tensor, ...]
) -> None:
    result, _ = simulation
    x, _, test_x, test_y = adult
    model = make_model(x.shape[1])
    initial = accuracy(model, test_x, test_y)
    model.load_state_dict(result.state)
    final = accuracy(model, test_x, test_y)
    # 3000 test rows: a 0.1 gain is ~10 standard errors; the seeded run gains ~0.36.
    assert final > initial + 0.1, (initial, final)


def test_simulation_epsilon_is_dp_accountings_poisson_sampled_gaussian(
    simulation: tuple[FlowerResult, DPFedAvgStrategy],
) -> None:
    result, strategy = simulation
    step = dp_event.PoissonSampledDpEvent(Q, dp_event.GaussianDpEvent(Z))
    event = dp_event.SelfComposedDpEvent(step, ROUNDS)
    rdp = rdp_privacy_accountant.RdpAccountant()  # the same default orders as ours
    rdp.compose(event)
    pld = pld_privacy_accountant.PLDAccountant(value_discretization_interval=1e-4)
    pld.compose(event)
    ours_rdp, ours_pld = result.epsilon(DELTA, "rdp"), result.epsilon(DELTA, "pld")
    assert ours_rdp.epsilon == pytest.approx(rdp.get_epsilon(DELTA), rel=1e-4)
    assert ours_pld.epsilon == pytest.approx(pld.get_epsilon(DELTA), rel=1e-4)
    assert ours_pld.relation.value == "add_remove" and ours_pld.delta == DELTA
    # Reported exactly as the strategy (the in-process path) reports it.
    assert ours_pld == strategy.aggregator.epsilon(DELTA)


def test_simulation_equals_the_in_process_federation_with_the_same_seed(
    simulation: tuple[FlowerResult, DPFedAvgStrategy], adult: tuple[torch.Tensor, ...]
) -> None:
    """:class:`DPFedAvg` (which ``test_distributed_flower`` shows equal to the strategy on an
    in-process grid) with the same clients and seed: the same model, up to the float rounding
    of a node sending θ + Δ for the strategy to subtract θ again, and the same ε."""
    result, _ = simulation
    x, y, _, _ = adult
    model = make_model(x.shape[1])
    federation = DPFedAvg(
        model,
        make_clients(x, y),
        sample_rate=Q,
        noise_multiplier=Z,
        clipping=FixedClipping(S),
        seed=SEED,
    )
    stats = [federation.round() for _ in range(ROUNDS)]
    assert [s.sampled for s in stats] == [r.sampled for r in result.rounds]
    for name, value in model.state_dict().items():
        torch.testing.assert_close(result.state[name], value, atol=1e-6, rtol=0)
    assert federation.epsilon(DELTA) == result.epsilon(DELTA)


def test_simulation_refuses_a_mismatched_or_used_strategy_or_no_ray(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clients = [LocalSGDClient(torch.zeros(2, 3), torch.zeros(2, dtype=torch.long))] * 3
    model = nn.Linear(3, 2)
    with pytest.raises(DeniableError, match="num_clients=3"):
        simulate_dp_fedavg(model, clients, make_strategy(), rounds=1)
    used = DPFedAvgStrategy(
        num_clients=3, sample_rate=Q, noise_multiplier=Z, clipping=FixedClipping(S)
    )
    used.pin({7: 0})
    with pytest.raises(DeniableError, match="already run"):
        simulate_dp_fedavg(model, clients, used, rounds=1)
    with pytest.raises(DeniableError, match="rounds"):
        simulate_dp_fedavg(model, clients, used, rounds=0)
    fresh = DPFedAvgStrategy(
        num_clients=3, sample_rate=Q, noise_multiplier=Z, clipping=FixedClipping(S)
    )
    monkeypatch.setattr(
        "deniable.distributed.flower_simulation.importlib.util.find_spec", lambda name: None
    )
    with pytest.raises(DeniableError) as info:
        simulate_dp_fedavg(model, clients, fresh, rounds=1)
    assert str(info.value) == "Flower's simulation needs Ray: pip install 'deniable[fl]'"


def test_pin_checks_every_slot_before_changing_any() -> None:
    strategy = DPFedAvgStrategy(
        num_clients=3, sample_rate=Q, noise_multiplier=Z, clipping=FixedClipping(S)
    )
    strategy.pin({10: 2})
    for bad in ({11: 3}, {11: 2}, {10: 1}, {11: 0, 12: 0}, {11: 0, 12: -1}):
        with pytest.raises(DeniableError) as info:
            strategy.pin(bad)
        assert "\n" not in str(info.value)
        assert strategy.slots == {10: 2}
    strategy.pin({10: 2, 11: 0})
    strategy._assign_slots([12, 10, 11])
    assert strategy.slots == {10: 2, 11: 0, 12: 1}
