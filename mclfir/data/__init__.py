"""Data layer: the image catalog, dataset adapters, validation, splits and the increment plan."""
