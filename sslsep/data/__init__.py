"""Clip sources (synthetic scenes, folders with labels, Parquet shards) and packing."""
