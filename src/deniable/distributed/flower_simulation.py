"""DP-FedAvg in Flower's simulation engine: :class:`~deniable.distributed.flower.DPFedAvgStrategy`
in a ServerApp, :class:`~deniable.distributed.fedavg.LocalSGDClient`\\ s in a ClientApp on Ray
actors, run by ``flwr.simulation.run_simulation`` (CPU only).

Needs Flower's ``simulation`` extra, which brings Ray: ``pip install 'deniable[fl]'``.

What the simulation adds to the strategy, and nothing private:

- **client k is Flower's partition k.** Flower draws node ids at random, so the strategy's default
  order of node ids would give the K client slots to the partitions in a different order on every
  run. The ServerApp first waits for the K virtual SuperNodes, asks each for its ``partition-id``
  (a query message; it carries no data) and pins node → slot = partition id
  (:meth:`~deniable.distributed.flower.DPFedAvgStrategy.pin`). With the same seed a run is then
  reproducible, and equal to :class:`~deniable.distributed.fedavg.DPFedAvg` on the same clients
  up to float rounding (a node sends θ + Δ, the strategy subtracts θ again).
- **a client keeps its state between rounds, as a device would**: the minibatch generator of a
  :class:`LocalSGDClient` is saved in the node's Flower ``Context`` after each round.

Privacy is the strategy's: each slot is Poisson-sampled with rate q every round, sampled updates
are clipped to S, N(0, z²S²) is added once to their sum on the server and the round's event is
recorded before the average is released. The ε of the returned
:meth:`~deniable.distributed.flower_apps.FlowerResult.epsilon` is user-level, add/remove-one
*client* among K, from the recorded events (the same tracker as the in-process path). Clients do
no evaluation: per-client metrics would be released without noise.

The ServerApp and ClientApp are built from :mod:`deniable.distributed.flower_apps`, as a real
deployment's are (``examples/flower_app``). Here the ClientApp, with every client's data,
travels to the Ray actors with each message: fine for partitions of a few MB (UCI Adult, MNIST);
for more, give :func:`~deniable.distributed.flower_apps.dp_fedavg_client_app` a client factory
that loads the node's own partition, as the deployment example does.
"""

from __future__ import annotations

import copy
import importlib.util
import os
from collections.abc import Sequence

from torch import nn

from deniable.distributed.fedavg import LocalSGDClient
from deniable.distributed.flower import DPFedAvgStrategy  # sets FLWR_TELEMETRY_ENABLED=0
from deniable.distributed.flower_apps import (
    FlowerResult,
    ListedClients,
    SameModel,
    ask_partitions,
    dp_fedavg_client_app,
    run_dp_fedavg,
    wait_for_nodes,
)
from deniable.errors import DeniableError, InvalidParameterError, check_count, check_positive

try:
    from flwr.app import Context
    from flwr.serverapp import Grid, ServerApp
except ImportError as error:  # pragma: no cover - depends on the optional extra
    raise ImportError(
        "deniable.distributed.flower_simulation needs Flower (flwr 1.42 with the simulation "
        "extra): pip install 'deniable[fl]'"
    ) from error


def simulate_dp_fedavg(
    model: nn.Module,
    clients: Sequence[LocalSGDClient],
    strategy: DPFedAvgStrategy,
    *,
    rounds: int,
    cpus: int = 2,
    cpus_per_client: float = 1.0,
    timeout: float = 600.0,
) -> FlowerResult:
    """Run ``rounds`` of ``strategy`` from ``model`` with ``clients[k]`` on partition ``k``.

    ``strategy`` must be fresh and have ``num_clients == len(clients)``. Ray gets ``cpus`` CPUs
    and no GPU unless it is already initialised (then its cluster is used as it is); each
    ClientApp actor takes ``cpus_per_client``, so ⌊cpus / cpus_per_client⌋ clients train at
    once. A Ray instance started here is shut down at the end. ``timeout`` (seconds) bounds the
    wait for nodes and for each round's replies; a node that misses it, or whose client raises
    (Flower logs the traceback), is a dropped client, counted in ``rounds``. ``model`` is not
    changed.
    """
    count = check_count("rounds", rounds)
    check_count("cpus", cpus)
    check_positive("cpus_per_client", cpus_per_client)
    check_positive("timeout", timeout)
    if len(clients) != strategy.aggregator.num_clients:
        raise DeniableError(
            f"the strategy has {strategy.aggregator.num_clients} client slots for "
            f"{len(clients)} clients; give it num_clients={len(clients)}"
        )
    if strategy.aggregator.rounds_done or strategy.slots:
        raise DeniableError("the strategy has already run; give the simulation a new one")
    if importlib.util.find_spec("ray") is None:
        raise DeniableError("Flower's simulation needs Ray: pip install 'deniable[fl]'")
    import ray
    from flwr.simulation import run_simulation

    initial = {name: value.detach().clone() for name, value in model.state_dict().items()}
    finished: list[FlowerResult] = []
    server = ServerApp()

    @server.main()
    def main(grid: Grid, context: Context) -> None:
        nodes = wait_for_nodes(grid, len(clients), timeout)
        partitions = ask_partitions(grid, nodes, timeout)
        if len(partitions) != len(nodes):
            raise DeniableError(
                f"only {len(partitions)} of {len(nodes)} simulated nodes said which partition "
                "they hold"
            )
        strategy.pin(partitions)
        finished.append(run_dp_fedavg(grid, strategy, initial, rounds=count, timeout=timeout))

    started_ray = not ray.is_initialized()
    if started_ray and cpus_per_client > cpus:
        raise InvalidParameterError("cpus_per_client", cpus_per_client, f"at most cpus ({cpus})")
    pythonpath = os.environ.get("PYTHONPATH")  # Flower's Ray start overwrites it
    client_app = dp_fedavg_client_app(
        SameModel(copy.deepcopy(model)),
        ListedClients(list(clients)),
        arrayrecord_key=strategy.arrayrecord_key,
    )
    try:
        run_simulation(
            server_app=server,
            client_app=client_app,
            num_supernodes=len(clients),
            backend_config={
                "init_args": {"num_cpus": cpus, "num_gpus": 0},
                "client_resources": {"num_cpus": cpus_per_client, "num_gpus": 0.0},
            },
        )
    finally:
        if started_ray:
            ray.shutdown()
            if pythonpath is None:
                os.environ.pop("PYTHONPATH", None)
            else:
                os.environ["PYTHONPATH"] = pythonpath
    if not finished:  # pragma: no cover - run_simulation re-raises the server's error
        raise DeniableError("Flower's simulation ended before the last round")
    return finished[0]
