"""The bottom layer: typed configuration, errors, progress, hashing and secret redaction (no I/O)."""
