"""Turning requests into tensors, running models, and turning tensors into predictions."""
