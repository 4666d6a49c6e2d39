"""The `worldgen` command line."""
