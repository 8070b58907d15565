"""The `tidal` command line."""
