"""Reliability suite: deposits under random faults, interrupted batches (bounded in time)."""
