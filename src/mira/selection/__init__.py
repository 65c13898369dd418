"""Keeping the best records: rankings, the decision rule under a token budget, and the selection outputs."""
