"""Text as models see it: token counting, start/middle/end windows, embeddings."""
