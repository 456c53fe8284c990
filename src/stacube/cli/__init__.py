"""The ``stacube`` command line."""
