"""Persistence: LMDB for state and the durability log, Parquet for events and results."""
