"""The run directory: its layout, the write lock, the saved config, done markers and the artifact type."""
