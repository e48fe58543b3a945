"""Workloads: synthetic access streams and recorded memory traces."""
