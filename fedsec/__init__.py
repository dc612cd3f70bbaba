"""fedsec: a federated-learning security testbed on Flower."""

__version__ = "0.1.0"
