"""Running stages: skip-if-done bookkeeping, the stage registry and dry-run plans."""
