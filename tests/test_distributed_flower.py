"""The Flower adapter runs the same DP-FedAvg as the in-process simulation (skipped without
flwr, an optional extra). Flower's Grid is replaced by an in-process one that runs the clients."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import pytest
import torch
from torch import nn

from deniable import accounting
from deniable.accounting.calibrate import dpsgd_event
from deniable.distributed.clipping import FixedClipping
from deniable.distributed.fedavg import DPFedAvg, LocalSGDClient

flwr_app = pytest.importorskip("flwr.app", reason="Flower (deniable[fl]) is not installed")
task_identity = pytest.importorskip("flwr.supercore.task_identity")
from deniable.distributed.flower import DPFedAvgStrategy  # noqa: E402

ArrayRecord, Message, RecordDict, Error = (
    flwr_app.ArrayRecord,
    flwr_app.Message,
    flwr_app.RecordDict,
    flwr_app.Error,
)
K, ROUNDS, Q, Z = 10, 4, 0.6, 0.8
OFFLINE = {104}  # this node answers every message with an error: a dropped client


@pytest.fixture(autouse=True)
def flower_run(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Messages need a run id; Flower's ServerApp sets it, so do we."""
    identity = task_identity.TaskIdentity
    monkeypatch.setattr(identity, "_run_id", 1)
    monkeypatch.setattr(identity, "_task_id", 1)
    monkeypatch.setattr(identity, "_node_id", 0)
    yield


def make_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 3))


def make_clients() -> list[LocalSGDClient]:
    g = torch.Generator().manual_seed(0)
    clients = []
    for i in range(K):
        x = torch.randn(12, 5, generator=g)
        y = (x[:, 0] > 0).long() + (x[:, 1] > 1).long()
        clients.append(LocalSGDClient(x, y, local_steps=3, learning_rate=0.3, seed=i))
    return clients


class InProcessGrid:
    """Nodes 100..100+K−1, each running one simulated client."""

    def __init__(self) -> None:
        self.clients = {100 + i: c for i, c in enumerate(make_clients())}

    def get_node_ids(self) -> Iterable[int]:
        return list(self.clients)

    def send_and_receive(self, messages: Iterable[object], *, timeout: float | None = None) -> list:
        replies = []
        for message in messages:
            node = message.metadata.dst_node_id  # type: ignore[attr-defined]
            if node in OFFLINE:
                replies.append(Message(Error(code=0, reason="offline"), reply_to=message))
                continue
            model = make_model()
            model.load_state_dict(message.content["arrays"].to_torch_state_dict())  # type: ignore[attr-defined]
            update = self.clients[node].update(model)
            local = {n: p.detach() + update[n] for n, p in model.named_parameters()}
            content = RecordDict({"arrays": ArrayRecord.from_torch_state_dict(local)})
            replies.append(Message(content, reply_to=message))
        return replies


class Offline:
    def update(self, model: nn.Module) -> None:
        return None


def test_flower_strategy_matches_the_simulation_and_the_accountant() -> None:
    strategy = DPFedAvgStrategy(
        num_clients=K, sample_rate=Q, noise_multiplier=Z, clipping=FixedClipping(0.5), seed=3
    )
    initial = ArrayRecord.from_torch_state_dict(make_model().state_dict())
    result = strategy.start(InProcessGrid(), initial, num_rounds=ROUNDS)  # type: ignore[arg-type]
    flower_final = result.arrays.to_torch_state_dict()

    clients: list = make_clients()
    for node in OFFLINE:
        clients[node - 100] = Offline()
    model = make_model()
    simulation = DPFedAvg(
        model, clients, sample_rate=Q, noise_multiplier=Z, clipping=FixedClipping(0.5), seed=3
    )
    for _ in range(ROUNDS):
        simulation.round()
    start = make_model().state_dict()
    for name, value in model.state_dict().items():
        assert not torch.allclose(value, start[name])  # the rounds did move the model
        torch.testing.assert_close(flower_final[name], value, atol=1e-5, rtol=0)
    expected = accounting.epsilon(dpsgd_event(Z, Q, ROUNDS), 1e-5).epsilon
    assert strategy.aggregator.epsilon(1e-5).epsilon == pytest.approx(expected, rel=1e-9)
