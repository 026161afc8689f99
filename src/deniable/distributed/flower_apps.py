"""The pieces of a Flower app that runs DP-FedAvg, shared by Flower's simulation
(:mod:`deniable.distributed.flower_simulation`) and real deployments (``examples/flower_app``).

Needs Flower (``pip install 'deniable[fl]'``; written against flwr 1.42's Message API).

Server side, composed in a ``ServerApp``'s main function:

- :func:`wait_for_nodes`: the connected node ids, once at least ``count`` are connected;
- :func:`ask_partitions`: node id → partition id, asked of each node with a query message that
  carries no data (a node answers with its node config's ``partition-id`` if it has one); give
  it to :meth:`~deniable.distributed.flower.DPFedAvgStrategy.pin` so that client slot k is
  partition k on every run, whatever node ids Flower draws;
- :func:`run_dp_fedavg`: the rounds of a :class:`~deniable.distributed.flower.DPFedAvgStrategy`,
  returned as a :class:`FlowerResult` whose ε comes from the events the strategy recorded.

Client side, :func:`dp_fedavg_client_app`: a ``ClientApp`` that answers the partition query and,
for a train message, runs the :class:`~deniable.distributed.fedavg.LocalSGDClient` its node
loads (``client(context)``: in a deployment, the node's own files) on the received global model
and sends the locally trained arrays back, unnoised: clipping and noise are the server's (the
strategy's), so the server is trusted with each sampled client's update. The client's minibatch
generator is kept in the node's Flower ``Context`` between rounds, as a device keeps its state.

Everything private is in the strategy: Poisson sampling of the K client slots with rate q,
clipping of each update to S, N(0, z²S²) added once to the sum, the round's event recorded
before the average is released. ε is user-level: add/remove-one *client* among K.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from deniable import accounting
from deniable.accounting.result import EpsilonResult
from deniable.distributed.fedavg import LocalSGDClient, RoundStats
from deniable.distributed.flower import DPFedAvgStrategy
from deniable.errors import DeniableError, check_count, check_positive
from deniable.events import Neighbouring, PrivacyEvent

try:
    from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MessageType, RecordDict
    from flwr.clientapp import ClientApp
    from flwr.serverapp import Grid
except ImportError as error:  # pragma: no cover - depends on the optional extra
    raise ImportError(
        "deniable.distributed.flower_apps needs Flower (flwr 1.42): pip install 'deniable[fl]'"
    ) from error

PARTITION_KEY = "partition-id"  # the node config key of a node's partition (client slot)
NODE_KEY = "deniable.node"  # a node's answer to the partition query
STATE_KEY = "deniable.client"  # the node's saved client state, in its Context

ModelFactory = Callable[[Context], nn.Module]
ClientFactory = Callable[[Context], LocalSGDClient]


@dataclass(frozen=True)
class FlowerResult:
    """The outcome of DP-FedAvg run by a Flower ServerApp.

    ``state``: the final global model (a ``state_dict``); ``rounds``: each round's
    :class:`RoundStats` (server-side diagnostics, not differentially private: keep them on the
    server); ``slots``: Flower node id → client slot; ``event``: every round's privacy event,
    composed; ``num_clients``, ``sample_rate``, ``noise_multiplier``: the strategy's K, q, z.
    """

    state: dict[str, Tensor]
    rounds: tuple[RoundStats, ...]
    slots: dict[int, int]
    event: PrivacyEvent
    relation: Neighbouring
    num_clients: int
    sample_rate: float
    noise_multiplier: float

    def epsilon(self, delta: float, accountant: str = "pld") -> EpsilonResult:
        """User-level ε (add/remove-one client) of the rounds run, from the recorded events."""
        return accounting.epsilon(self.event, delta, accountant=accountant, relation=self.relation)

    def report(self, delta: float, accountant: str = "pld") -> dict[str, object]:
        """A JSON-ready privacy report: the guarantee, what it is about and the settings it
        rests on. It holds no per-round counts (those are not private)."""
        return {
            "guarantee": self.epsilon(delta, accountant).to_dict(),
            "unit": "client",
            "num_clients": self.num_clients,
            "sample_rate": self.sample_rate,
            "noise_multiplier": self.noise_multiplier,
            "rounds": len(self.rounds),
            "event": self.event.to_dict(),
        }


def wait_for_nodes(grid: Grid, count: int, timeout: float) -> list[int]:
    """The ids of the connected nodes (sorted) once there are at least ``count``; a
    :class:`DeniableError` after ``timeout`` seconds."""
    check_positive("timeout", timeout)
    deadline = time.monotonic() + timeout
    while len(nodes := sorted(grid.get_node_ids())) < count:
        if time.monotonic() > deadline:
            raise DeniableError(f"only {len(nodes)} of {count} nodes connected in {timeout:g} s")
        time.sleep(0.05)
    return nodes


def ask_partitions(grid: Grid, nodes: list[int], timeout: float) -> dict[int, int]:
    """Node id → partition id, for the ``nodes`` that answered the query with one (a query
    message carries no data; nodes without a ``partition-id`` in their node config, and nodes
    that do not answer in ``timeout`` seconds, are left out)."""
    check_positive("timeout", timeout)
    queries = [
        Message(RecordDict(), message_type=MessageType.QUERY, dst_node_id=node) for node in nodes
    ]
    partitions = {}
    for reply in grid.send_and_receive(queries, timeout=timeout):
        if reply.has_error() or NODE_KEY not in reply.content:
            continue
        record = reply.content[NODE_KEY]
        if isinstance(record, ConfigRecord) and PARTITION_KEY in record:
            partitions[int(reply.metadata.src_node_id)] = int(record[PARTITION_KEY])  # type: ignore[arg-type]
    return partitions


def run_dp_fedavg(
    grid: Grid,
    strategy: DPFedAvgStrategy,
    initial: Mapping[str, Tensor],
    *,
    rounds: int,
    timeout: float,
) -> FlowerResult:
    """``rounds`` rounds of ``strategy`` from the model state ``initial``. ``timeout`` (seconds)
    bounds each round's wait for replies; a node that misses it is a dropped client."""
    count = check_count("rounds", rounds)
    check_positive("timeout", timeout)
    arrays = ArrayRecord.from_torch_state_dict(dict(initial))
    result = strategy.start(grid, arrays, num_rounds=count, timeout=timeout)
    aggregator = strategy.aggregator
    return FlowerResult(
        state=dict(result.arrays.to_torch_state_dict()),
        rounds=tuple(strategy.rounds),
        slots=dict(strategy.slots),
        event=aggregator.tracker.event(),
        relation=aggregator.tracker.relation,
        num_clients=aggregator.num_clients,
        sample_rate=aggregator.sample_rate,
        noise_multiplier=aggregator.noise_multiplier,
    )


def dp_fedavg_client_app(
    model: ModelFactory, client: ClientFactory, *, arrayrecord_key: str = "arrays"
) -> ClientApp:
    """A ClientApp for :class:`~deniable.distributed.flower.DPFedAvgStrategy`: on a train
    message it puts the received global arrays in ``model(context)``, runs
    ``client(context).update`` and replies with the locally trained arrays (the strategy
    subtracts the global ones, clips and noises). ``arrayrecord_key`` must be the strategy's.

    ``client(context)`` is called once per train message and must return a fresh client (or one
    it does not mind being changed): its minibatch generator is restored from the node's Context
    before training and saved after.
    """
    node = _Node(model, client, arrayrecord_key)
    app = ClientApp()
    app.query()(node.query)
    app.train()(node.train)
    return app


class _Node:
    """What every node runs (picklable, for the simulation's Ray actors)."""

    def __init__(self, model: ModelFactory, client: ClientFactory, key: str) -> None:
        self.model = model
        self.client = client
        self.key = key

    def query(self, message: Message, context: Context) -> Message:
        partition = context.node_config.get(PARTITION_KEY)
        record = ConfigRecord({} if partition is None else {PARTITION_KEY: int(partition)})
        return Message(RecordDict({NODE_KEY: record}), reply_to=message)

    def train(self, message: Message, context: Context) -> Message:
        client = self.client(context)
        saved = context.state.get(STATE_KEY)
        if isinstance(saved, ConfigRecord):
            generator = bytearray(saved["generator"])  # type: ignore[arg-type]
            client.generator.set_state(torch.frombuffer(generator, dtype=torch.uint8))
        arrays = message.content[self.key]
        if not isinstance(arrays, ArrayRecord):
            raise DeniableError(f"the train message has no arrays under {self.key!r}")
        local = self.model(context)
        local.load_state_dict(arrays.to_torch_state_dict())
        update = client.update(local)
        state = local.state_dict()
        for name, delta in update.items():
            state[name] = state[name] + delta
        context.state[STATE_KEY] = ConfigRecord(
            {"generator": client.generator.get_state().numpy().tobytes()}
        )
        content = RecordDict({self.key: ArrayRecord.from_torch_state_dict(state)})
        return Message(content, reply_to=message)


class ListedClients:
    """``clients[partition-id]`` (a copy) for a node: the simulation's client factory, where
    every client's data travels with the ClientApp."""

    def __init__(self, clients: list[LocalSGDClient]) -> None:
        self.clients = clients

    def __call__(self, context: Context) -> LocalSGDClient:
        return copy.deepcopy(self.clients[int(context.node_config[PARTITION_KEY])])


class SameModel:
    """A copy of ``model`` for every node: the model factory when the architecture is fixed."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model

    def __call__(self, context: Context) -> nn.Module:
        return copy.deepcopy(self.model)
