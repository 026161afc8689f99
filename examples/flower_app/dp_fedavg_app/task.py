"""What the ServerApp and the ClientApp share: the run config, the model, the data files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from flwr.app import Context
from torch import nn

from deniable.distributed.fedavg import LocalSGDClient


@dataclass(frozen=True)
class Settings:
    """The app's run config (``[tool.flwr.app.config]`` in pyproject.toml, with the
    ``flwr run --run-config`` overrides)."""

    num_clients: int
    sample_rate: float
    noise_multiplier: float
    clip_norm: float
    num_rounds: int
    delta: float
    accountant: str
    seed: int | None
    num_features: int
    local_steps: int
    learning_rate: float
    batch_size: int
    min_nodes: int
    timeout: float
    report_path: str
    model_path: str
    test_path: str

    @classmethod
    def from_context(cls, context: Context) -> Settings:
        c = context.run_config
        seed = int(c["seed"])
        return cls(
            num_clients=int(c["num-clients"]),
            sample_rate=float(c["sample-rate"]),
            noise_multiplier=float(c["noise-multiplier"]),
            clip_norm=float(c["clip-norm"]),
            num_rounds=int(c["num-rounds"]),
            delta=float(c["delta"]),
            accountant=str(c["accountant"]),
            seed=None if seed < 0 else seed,
            num_features=int(c["num-features"]),
            local_steps=int(c["local-steps"]),
            learning_rate=float(c["learning-rate"]),
            batch_size=int(c["batch-size"]),
            min_nodes=int(c["min-nodes"]),
            timeout=float(c["timeout"]),
            report_path=str(c["report-path"]),
            model_path=str(c["model-path"]),
            test_path=str(c["test-path"]),
        )


def make_model(num_features: int) -> nn.Module:
    """Logistic regression (two logits), initialised with a fixed seed: the initial model is
    public, the same on the server and in every test."""
    generator = torch.Generator().manual_seed(0)
    model = nn.Linear(num_features, 2)
    with torch.no_grad():
        for param in model.parameters():
            param.uniform_(-0.1, 0.1, generator=generator)
    return model


def write_partition(path: Path, x: np.ndarray, y: np.ndarray) -> None:
    """One party's rows: ``x`` (float32 features) and ``y`` (int64 labels) in an .npz file."""
    np.savez(path, x=x.astype(np.float32), y=y.astype(np.int64))


def read_partition(path: str | Path) -> tuple[torch.Tensor, torch.Tensor]:
    """The (features, labels) written by :func:`write_partition` (pickles are refused)."""
    with np.load(Path(path).expanduser(), allow_pickle=False) as arrays:
        return torch.from_numpy(arrays["x"]), torch.from_numpy(arrays["y"])


def local_client(context: Context) -> LocalSGDClient:
    """The node's client on its own data: ``data-path`` in the SuperNode's node config (read on
    the node, never sent by the server); ``seed`` (default: ``partition-id``, else 0) seeds its
    minibatch order for the first round (the node's Context keeps the generator afterwards)."""
    settings = Settings.from_context(context)
    node = context.node_config
    if "data-path" not in node:
        raise ValueError('this SuperNode has no data: start it with --node-config "data-path=..."')
    x, y = read_partition(str(node["data-path"]))
    seed = int(node.get("seed", node.get("partition-id", 0)))
    return LocalSGDClient(
        x,
        y,
        local_steps=settings.local_steps,
        learning_rate=settings.learning_rate,
        batch_size=settings.batch_size,
        seed=seed,
    )


def local_model(context: Context) -> nn.Module:
    """The architecture the global arrays are loaded into."""
    return make_model(Settings.from_context(context).num_features)
