"""The daemon's LMDB state, one module per table (see lmdb_store.LmdbStore)."""
