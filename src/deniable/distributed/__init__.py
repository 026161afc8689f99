"""Scale-out: multi-process DP-SGD on torch.distributed, and DP-FedAvg.

- :func:`make_distributed_private` / :class:`DistributedPrivateTraining`: W processes (gloo)
  train one model; every rank draws the same global Poisson batch, clips its shard, the clipped
  sums are added and rank 0 adds the Gaussian noise once per logical step, so the privacy event
  and the model are those of the single-process run (:mod:`deniable.distributed.dp_sgd`).
- :func:`join` / :class:`Rendezvous`: join a run after checking the ranks agree
  (:mod:`deniable.distributed.group`); ``python -m deniable.distributed.train`` for torchrun.
- :class:`DPFedAvg` and :class:`DPFedAvgAggregator`: user-level DP federated averaging with
  fixed or adaptive clipping (:mod:`deniable.distributed.fedavg`).
"""

from deniable.distributed.clipped import ClippedSum, clipped_sum
from deniable.distributed.clipping import (
    AdaptiveClipping,
    FixedClipping,
    update_noise_multiplier,
)
from deniable.distributed.dp_sgd import (
    DistributedPrivateTraining,
    ShardBatch,
    WorkerLostError,
    make_distributed_private,
    model_digest,
)
from deniable.distributed.fedavg import (
    DPFedAvg,
    DPFedAvgAggregator,
    LocalSGDClient,
    RoundStats,
)
from deniable.distributed.group import Group, Rendezvous, free_port, join

__all__ = [
    "AdaptiveClipping",
    "ClippedSum",
    "DPFedAvg",
    "DPFedAvgAggregator",
    "DistributedPrivateTraining",
    "FixedClipping",
    "Group",
    "LocalSGDClient",
    "Rendezvous",
    "RoundStats",
    "ShardBatch",
    "WorkerLostError",
    "clipped_sum",
    "free_port",
    "join",
    "make_distributed_private",
    "model_digest",
    "update_noise_multiplier",
]
