"""Judging selections: `mira compare`, ablations and proxy training."""
