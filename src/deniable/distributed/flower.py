"""A Flower strategy that runs DP-FedAvg with deniable's sampler, clipping, noise and accountant.

Needs Flower with the Message API (``flwr.serverapp.strategy``; written against flwr 1.42):
``pip install 'deniable[fl]'``. Everything private happens in
:class:`~deniable.distributed.fedavg.DPFedAvgAggregator`; this adapter only maps Flower nodes to
the K client slots the accountant counts, sends the global arrays to the sampled nodes and turns
their replies into updates:

- the population is ``num_clients`` slots; connected nodes take free slots in order of node id
  and keep them. Each slot is sampled with probability q every round (Poisson), so ε is for
  add/remove-one *client* among K. A sampled slot with no connected node, a node that replies
  with an error, or no reply at all is a dropped client: it contributes nothing, the round is
  still recorded (the release happened). A node arriving when every slot is taken is not used;
  raise ``num_clients`` to include it. :meth:`DPFedAvgStrategy.pin` gives chosen nodes chosen
  slots instead (Flower's simulation pins node → partition id, so client k is partition k).
- every floating-point array of the global :class:`~flwr.app.ArrayRecord` is a parameter: the
  update of a node is its returned arrays minus the global ones; other arrays are kept as sent.
- no client-side evaluation: per-client metrics would be released without noise.

The strategy's ``aggregator.epsilon(delta)`` is the user-level ε of the rounds run so far;
``rounds`` holds each round's :class:`~deniable.distributed.fedavg.RoundStats` (server-side
diagnostics, not differentially private).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping

import torch

from deniable.distributed.clipping import Clipping
from deniable.distributed.fedavg import DPFedAvgAggregator, RoundStats, Update
from deniable.errors import DeniableError, check_positive

# No network at run time: Flower reports usage to flower.ai unless this is "0" (read when
# flwr is first imported, here and in the Ray actors, which inherit the environment).
os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")

try:
    from flwr.app import ArrayRecord, ConfigRecord, Message, MessageType, MetricRecord, RecordDict
    from flwr.serverapp import Grid
    from flwr.serverapp.strategy import Strategy
except ImportError as error:  # pragma: no cover - depends on the optional extra
    raise ImportError(
        "deniable.distributed.flower needs Flower (flwr with flwr.serverapp.strategy, e.g. "
        "1.42): pip install 'deniable[fl]'"
    ) from error

logger = logging.getLogger(__name__)


class DPFedAvgStrategy(Strategy):
    """DP-FedAvg as a Flower strategy: Poisson client sampling, user-level clipping, Gaussian
    noise added once per round on the server, ε from deniable's accountant."""

    def __init__(
        self,
        *,
        num_clients: int,
        sample_rate: float,
        noise_multiplier: float,
        clipping: Clipping,
        server_learning_rate: float = 1.0,
        seed: int | None = None,
        arrayrecord_key: str = "arrays",
        configrecord_key: str = "config",
    ) -> None:
        self.aggregator = DPFedAvgAggregator(
            num_clients=num_clients,
            sample_rate=sample_rate,
            noise_multiplier=noise_multiplier,
            clipping=clipping,
            seed=seed,
        )
        self.server_learning_rate = check_positive("server_learning_rate", server_learning_rate)
        self.arrayrecord_key = arrayrecord_key
        self.configrecord_key = configrecord_key
        self.slots: dict[int, int] = {}  # node id -> client slot
        self.rounds: list[RoundStats] = []
        self._global: dict[str, torch.Tensor] = {}
        self._chosen: list[int] = []

    def summary(self) -> None:
        a = self.aggregator
        logger.info(
            "DP-FedAvg: %d client slots, q=%g, noise multiplier %g, %s",
            a.num_clients,
            a.sample_rate,
            a.noise_multiplier,
            a.clipping,
        )

    def pin(self, slots: Mapping[int, int]) -> None:
        """Give node ``n`` client slot ``slots[n]`` (nodes keep their slots; nodes not pinned take
        the free ones in order of node id). Checks every pair before changing anything."""
        count = self.aggregator.num_clients
        holders = {slot: node for node, slot in self.slots.items()}
        if len(set(slots.values())) != len(slots):
            raise DeniableError("two nodes were given the same client slot")
        for node, slot in slots.items():
            if isinstance(slot, bool) or not isinstance(slot, int) or not 0 <= slot < count:
                raise DeniableError(f"node {node}: client slot {slot!r} is not in [0, {count})")
            if self.slots.get(node, slot) != slot:
                raise DeniableError(f"node {node} already has client slot {self.slots[node]}")
            if holders.get(slot, node) != node:
                raise DeniableError(f"client slot {slot} is already node {holders[slot]}'s")
        self.slots.update(slots)

    def _assign_slots(self, nodes: Iterable[int]) -> None:
        free = [s for s in range(self.aggregator.num_clients) if s not in self.slots.values()]
        for node in sorted(nodes):
            if node in self.slots:
                continue
            if not free:
                logger.warning(
                    "node %d not used: all %d client slots are taken", node, len(self.slots)
                )
                continue
            self.slots[node] = free.pop(0)

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        self._assign_slots(grid.get_node_ids())
        self._global = dict(arrays.to_torch_state_dict())
        self._chosen = [int(s) for s in self.aggregator.sample()]
        chosen = set(self._chosen)
        config["server-round"] = server_round
        record = RecordDict({self.arrayrecord_key: arrays, self.configrecord_key: config})
        return [
            Message(content=record, message_type=MessageType.TRAIN, dst_node_id=node)
            for node, slot in sorted(self.slots.items())
            if slot in chosen
        ]

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        template = {n: t for n, t in self._global.items() if t.is_floating_point()}
        by_slot: dict[int, Update | None] = dict.fromkeys(self._chosen)
        for reply in replies:
            slot = self.slots.get(int(reply.metadata.src_node_id))
            if slot not in by_slot:
                continue  # not sampled this round
            if reply.has_error() or self.arrayrecord_key not in reply.content:
                continue  # dropped
            record = reply.content[self.arrayrecord_key]
            if isinstance(record, ArrayRecord):
                by_slot[slot] = _update(record, template)
            else:
                logger.warning("client slot %d replied without arrays; dropped", slot)
        average, stats = self.aggregator.aggregate(template, [by_slot[s] for s in self._chosen])
        self.rounds.append(stats)
        updated = dict(self._global)
        for name, value in average.items():
            step = (self.server_learning_rate * value).to(template[name].dtype)
            updated[name] = template[name] + step
        metrics = MetricRecord({"clip_norm": stats.clip_norm, "round": stats.round})
        return ArrayRecord.from_torch_state_dict(updated), metrics

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        return []

    def aggregate_evaluate(
        self, server_round: int, replies: Iterable[Message]
    ) -> MetricRecord | None:
        return None


def _update(arrays: ArrayRecord, template: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Returned arrays minus the global ones; a missing or misshapen array is passed on as is,
    for the aggregator to reject the update (and log why)."""
    local = arrays.to_torch_state_dict()
    out = {}
    for name, reference in template.items():
        if name not in local:
            continue
        value = local[name]
        out[name] = (
            value.to(reference.dtype) - reference if value.shape == reference.shape else value
        )
    return out
