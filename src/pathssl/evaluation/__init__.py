"""Evaluating frozen encoders on labelled tiles (linear probe, kNN) and building the
development tasks from the shared real data."""
