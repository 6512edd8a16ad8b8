"""Data: raw folders -> preprocessed Parquet shards -> Ray Data streams."""
