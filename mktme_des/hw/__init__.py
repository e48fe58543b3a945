"""The hardware model: a platform built from a model file, on one SimPy clock."""
