"""Tiles: the grid over the tissue, batched region reading, the compressed-tile (GPU JPEG)
path, and tile augmentations."""
