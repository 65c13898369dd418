"""What "good" means per group: source grouping, rubric discovery (phase 1) and teacher annotation (phase 2)."""
