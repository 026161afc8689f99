"""DP-SGD training: samplers, the private step, the privacy tracker, checkpoints, trainer."""
