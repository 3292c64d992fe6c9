"""Slide aggregation (between the tile encoder and the outputs): pretrained slide encoders
that turn a slide's tile features and coordinates into one slide embedding."""
