"""The catalog: products (STAC Collections), datasets (STAC Items), quality rules, pgSTAC access."""
