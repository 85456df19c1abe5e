"""Stages: the only package that imports Ray. Each wires the core into Ray Data/Train/Tune."""
