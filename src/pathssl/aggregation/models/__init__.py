"""Slide-encoder architectures, written to load the published checkpoints' keys unchanged."""
