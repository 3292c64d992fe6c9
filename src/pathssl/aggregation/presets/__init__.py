"""Pretrained slide-encoder presets: importing a module registers its preset.
One import line per preset module."""
