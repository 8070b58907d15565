"""Versioned datasets: content-addressed Parquet versions with schemas, profiles and lineage."""
