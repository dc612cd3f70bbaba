"""Datasets as in-memory tensors and their partitioning among clients."""
