"""The noiseless half of a DP-SGD step, for workers: see :mod:`deniable.train.clipped_sum`.

Every worker computes :func:`clipped_sum` over its shard of the logical batch; the sums are added
across workers and the Gaussian noise is drawn once, by one process
(:mod:`deniable.distributed.dp_sgd`). It is the same function the single-process step noises.
"""

from deniable.train.clipped_sum import ClippedSum, clipped_sum, clipping_groups

__all__ = ["ClippedSum", "clipped_sum", "clipping_groups"]
