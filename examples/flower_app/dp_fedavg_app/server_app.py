"""The ServerApp: deniable's DP-FedAvg strategy; reports the user-level ε after the last round.

Runs where the SuperLink runs. It sees each sampled client's clipped update before the noise
is added (central DP: the server is trusted); what leaves it (the model, the report) is the
noised result, whose ε the report states.
"""

from __future__ import annotations

import json
from logging import INFO
from pathlib import Path

import torch
from flwr.app import Context
from flwr.common import log
from flwr.serverapp import Grid, ServerApp

from deniable.distributed.clipping import FixedClipping
from deniable.distributed.flower import DPFedAvgStrategy
from deniable.distributed.flower_apps import ask_partitions, run_dp_fedavg, wait_for_nodes

from .task import Settings, make_model, read_partition

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    settings = Settings.from_context(context)
    model = make_model(settings.num_features)
    initial = {name: value.clone() for name, value in model.state_dict().items()}
    strategy = DPFedAvgStrategy(
        num_clients=settings.num_clients,
        sample_rate=settings.sample_rate,
        noise_multiplier=settings.noise_multiplier,
        clipping=FixedClipping(settings.clip_norm),
        seed=settings.seed,
    )
    nodes = wait_for_nodes(grid, settings.min_nodes, settings.timeout)
    # Nodes started with a partition-id take client slot = partition id (reproducible runs);
    # the others take free slots as they come.
    strategy.pin(ask_partitions(grid, nodes, settings.timeout))
    result = run_dp_fedavg(
        grid, strategy, initial, rounds=settings.num_rounds, timeout=settings.timeout
    )

    report = result.report(settings.delta, settings.accountant)
    guarantee = result.epsilon(settings.delta, settings.accountant)
    log(
        INFO,
        "DP-FedAvg: user-level ε = %.4f at δ = %g (%s, add/remove one client among %d) after "
        "%d rounds, q = %g, z = %g",
        guarantee.epsilon,
        guarantee.delta,
        guarantee.accountant,
        result.num_clients,
        len(result.rounds),
        result.sample_rate,
        result.noise_multiplier,
    )
    if settings.test_path:  # the server's own held-out data: no client data involved
        x, y = read_partition(settings.test_path)
        report["test_accuracy"] = {
            "initial": _accuracy(initial, settings.num_features, x, y),
            "final": _accuracy(result.state, settings.num_features, x, y),
        }
        log(INFO, "DP-FedAvg: test accuracy %s", report["test_accuracy"])
    if settings.model_path:
        torch.save(result.state, settings.model_path)
        log(INFO, "DP-FedAvg: final model written to %s", Path(settings.model_path).resolve())
    if settings.report_path:
        Path(settings.report_path).write_text(json.dumps(report, indent=2) + "\n")
        log(INFO, "DP-FedAvg: privacy report written to %s", Path(settings.report_path).resolve())


def _accuracy(
    state: dict[str, torch.Tensor], features: int, x: torch.Tensor, y: torch.Tensor
) -> float:
    model = make_model(features)
    model.load_state_dict(state)
    with torch.no_grad():
        return float((model(x).argmax(dim=1) == y).float().mean())
