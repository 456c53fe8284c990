"""Deployable HTTP apps: STAC API, raster API, jobs API and the web console, thin over stacube."""
