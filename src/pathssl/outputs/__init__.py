"""Writing a slide's outputs: JSON representations, feature map, HDF5, mask, preview."""
