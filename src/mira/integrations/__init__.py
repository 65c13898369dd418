"""Adapters of :class:`mira.Scorer` to other data-processing frameworks, each behind its own extra
(``pip install "mira-select[datatrove]"``). Nothing in mira imports them; each imports its framework."""
