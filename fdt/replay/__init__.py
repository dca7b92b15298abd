"""Replay ingestion: Dopamine's log format, the sources it comes from, the Parquet store, and the
offline demo that writes logs like the dataset's."""
