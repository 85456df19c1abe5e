"""Shard format, corpus importers, label budgets, bucketing and quarantine (no Ray)."""
