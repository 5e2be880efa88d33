"""batchgate: one gRPC API for every batch scheduler."""

__version__ = "0.1.0"
