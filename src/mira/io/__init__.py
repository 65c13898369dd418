"""Reading and writing bytes: compressed streams, JSONL and Parquet readers, object storage, atomic files."""
