"""The shared ServerApp/ClientApp pieces (:mod:`deniable.distributed.flower_apps`) on an
in-process grid that hands each message to the real ClientApp with the node's own Context: the
partition query, pinning, the rounds, the report, and equality with :class:`DPFedAvg`. The same
pieces run in Flower's simulation (``test_distributed_flower_simulation``) and in a real
deployment (``test_distributed_flower_deployment``)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import pytest
import torch
from torch import nn

from deniable import accounting
from deniable.accounting.calibrate import dpsgd_event
from deniable.distributed.clipping import FixedClipping
from deniable.distributed.fedavg import DPFedAvg, LocalSGDClient
from deniable.errors import DeniableError

flwr_app = pytest.importorskip("flwr.app", reason="Flower (deniable[fl]) is not installed")
task_identity = pytest.importorskip("flwr.supercore.task_identity")
from deniable.distributed.flower import DPFedAvgStrategy  # noqa: E402
from deniable.distributed.flower_apps import (  # noqa: E402
    ListedClients,
    SameModel,
    ask_partitions,
    dp_fedavg_client_app,
    run_dp_fedavg,
    wait_for_nodes,
)

Context, Message, RecordDict, Error = (
    flwr_app.Context,
    flwr_app.Message,
    flwr_app.RecordDict,
    flwr_app.Error,
)
K, ROUNDS, Q, Z, S, SEED = 4, 3, 0.7, 0.8, 0.5, 5
# Node id → partition id (node ids are not in partition order, as Flower draws them).
NODES = {907: 2, 311: 0, 555: 3, 712: 1}


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
    return nn.Linear(5, 3)


def make_clients() -> list[LocalSGDClient]:
    g = torch.Generator().manual_seed(0)
    clients = []
    for k in range(K):
        x = torch.randn(20, 5, generator=g)
        y = (x[:, 0] > 0).long() + (x[:, 1] > 1).long()
        clients.append(LocalSGDClient(x, y, local_steps=3, learning_rate=0.3, batch_size=8, seed=k))
    return clients


class Grid:
    """Nodes that run ``app`` with a Context each, kept between messages as a SuperNode keeps
    it; ``silent`` nodes answer every message with an error."""

    def __init__(self, configs: dict[int, dict], app: object, silent: Iterable[int] = ()) -> None:
        self.app = app
        self.silent = set(silent)
        self.contexts = {
            node: Context(
                run_id=1, node_id=node, node_config=config, state=RecordDict(), run_config={}
            )
            for node, config in configs.items()
        }
        self.sent: list[str] = []

    def get_node_ids(self) -> list[int]:
        return list(self.contexts)

    def send_and_receive(self, messages: Iterable, *, timeout: float | None = None) -> list:
        replies = []
        for message in messages:
            node = message.metadata.dst_node_id
            self.sent.append(message.metadata.message_type)
            if node in self.silent:
                replies.append(Message(Error(code=0, reason="offline"), reply_to=message))
                continue
            reply = self.app(message, self.contexts[node])  # type: ignore[operator]
            replies.append(reply)
        return replies


def client_app() -> object:
    return dp_fedavg_client_app(SameModel(make_model()), ListedClients(make_clients()))


def test_nodes_report_their_partitions_and_nodes_without_one_are_left_out() -> None:
    configs = {node: {"partition-id": p} for node, p in NODES.items()}
    configs[100] = {"data-path": "mine.npz"}  # no partition id
    grid = Grid(configs, client_app(), silent=[555])
    assert ask_partitions(grid, sorted(configs), timeout=5) == {907: 2, 311: 0, 712: 1}  # type: ignore[arg-type]
    assert grid.sent == ["query"] * 5


def test_wait_for_nodes_names_how_many_came() -> None:
    grid = Grid({1: {}}, client_app())
    assert wait_for_nodes(grid, 1, timeout=1) == [1]  # type: ignore[arg-type]
    with pytest.raises(DeniableError) as info:
        wait_for_nodes(grid, 2, timeout=0.1)  # type: ignore[arg-type]
    assert str(info.value) == "only 1 of 2 nodes connected in 0.1 s"


def test_pinned_rounds_equal_the_in_process_federation_and_the_report_states_epsilon() -> None:
    grid = Grid({node: {"partition-id": p} for node, p in NODES.items()}, client_app())
    strategy = DPFedAvgStrategy(
        num_clients=K, sample_rate=Q, noise_multiplier=Z, clipping=FixedClipping(S), seed=SEED
    )
    nodes = wait_for_nodes(grid, K, timeout=1)  # type: ignore[arg-type]
    strategy.pin(ask_partitions(grid, nodes, timeout=5))  # type: ignore[arg-type]
    initial = make_model().state_dict()
    result = run_dp_fedavg(grid, strategy, initial, rounds=ROUNDS, timeout=5)  # type: ignore[arg-type]
    assert result.slots == NODES and len(result.rounds) == ROUNDS
    assert all(r.dropped == r.rejected == 0 for r in result.rounds)
    for name, value in initial.items():
        assert torch.equal(value, make_model().state_dict()[name])  # not changed

    model = make_model()
    federation = DPFedAvg(
        model,
        make_clients(),
        sample_rate=Q,
        noise_multiplier=Z,
        clipping=FixedClipping(S),
        seed=SEED,
    )
    stats = [federation.round() for _ in range(ROUNDS)]
    assert [s.sampled for s in stats] == [r.sampled for r in result.rounds]
    assert sum(s.sampled for s in stats) > 0
    for name, value in model.state_dict().items():
        # The client generators were carried in the nodes' Contexts across rounds.
        torch.testing.assert_close(result.state[name], value, atol=1e-6, rtol=0)

    report = result.report(1e-5)
    expected = accounting.epsilon(dpsgd_event(Z, Q, ROUNDS), 1e-5)
    assert report["guarantee"]["epsilon"] == pytest.approx(expected.epsilon, rel=1e-9)  # type: ignore[index]
    assert (report["unit"], report["num_clients"], report["rounds"]) == ("client", K, ROUNDS)
    assert result.epsilon(1e-5) == federation.epsilon(1e-5)
