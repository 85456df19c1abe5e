"""Training core (no Ray): optimizers and schedules, the step loop, checkpoints, data position, metrics."""
