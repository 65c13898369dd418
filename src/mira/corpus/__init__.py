"""The corpus: records and their formats, the sources of a run, the sample index, per-shard token counts."""
