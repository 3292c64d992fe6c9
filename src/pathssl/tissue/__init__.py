"""Tissue: the mask (detected or given), marker ink, and per-tile quality control."""
