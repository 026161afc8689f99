"""DP-FedAvg on Flower's deployment engine, built from deniable (see ../README.md)."""
