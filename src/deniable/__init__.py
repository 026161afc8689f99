"""deniable: differential privacy for deep learning that you can check."""

__version__ = "0.1.0"
