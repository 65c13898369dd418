"""Student scores: distilling students, which scores to trust (reliability), applying students, the score table."""
