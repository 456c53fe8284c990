"""The cube: loading with odc-stac, masking, compositing and spectral indices."""
