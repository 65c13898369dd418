"""Rankings: how each selection method orders the corpus, behind one registry.

Every method turns the score table into a :class:`Ranking`: a key per record (higher is better;
ties are broken by a seeded hash of the record id), which records are eligible at all, and the
retention mode the method implies. ``select`` then applies the same budget, floors, caps and
bookkeeping to every method, so a comparison differs only in the ranking.

    from mira.selection.rankings import ranking, get_method, prepare
    prepare(config, run, progress)        # corpus passes some methods need (cached, resumable)
    rank_by = ranking(config, table)      # config.selection.method decides

Methods (one module each; the paper's names in brackets):

- ``mira`` — the MIRA aggregate score under ``selection.mode``: ``group`` [MIRA-Group],
  ``source`` [MIRA-Source], ``global`` [MIRA-Global, one cutoff over everything].
- ``random`` — source-preserving random [random]: each source keeps the same token share.
- ``length`` — longest records first: the length prior MIRA must not reduce to.
- ``dsir`` — hashed n-gram importance weights toward a target corpus [DSIR].
- ``perplexity`` — lowest perplexity under a reference n-gram language model first [PPL].
- ``dataman`` — one fixed 14-criterion rubric, teacher-labelled on a sample of the whole corpus
  and distilled into one student, ranked by its overall score [DataMan].

Every method but random ranks under any ``selection.mode``; the paper's PPL and DataMan used one
global cutoff (``mode: global``), which changes the mixture of sources as well as the ranking.

A method module defines ``rank(config, table) -> Ranking`` (and ``ranker(config, run)`` where it
computes something over the whole corpus before ranking a record: see :func:`ranker`), ``MODE``
where the method fixes its retention mode (random: per source), and, where it reads more than the
score table, ``fingerprint(config, run) -> str`` (what its ranking depends on, for select's
fingerprint), ``prepare(config, run, progress) -> dict`` (a cached pass over the corpus) and
``plan(config, run) -> list[str]`` (what that pass will cost, for ``--dry-run``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

from mira.artifacts.selection import DecisionReason
from mira.core.config import RunConfig
from mira.core.config_selection import METHOD_NAMES, check_method

if TYPE_CHECKING:
    from mira.run.rundir import RunDir
    from mira.scoring.table import ScoreTable

UNSCORED = DecisionReason.UNSCORED

# name -> module holding rank() (and fingerprint()/prepare() where the method needs them); the names
# are config's METHOD_NAMES, a test keeps the two equal.
METHODS: dict[str, str] = {
    "mira": "mira.selection.rankings.mira_score",
    "random": "mira.selection.rankings.source_random",
    "length": "mira.selection.rankings.length",
    "dsir": "mira.selection.rankings.dsir",
    "perplexity": "mira.selection.rankings.perplexity",
    "dataman": "mira.selection.rankings.dataman",
}


@dataclass
class Ranking:
    key: np.ndarray  # float64, higher is better; not read where not eligible (may be NaN there)
    eligible: np.ndarray  # bool; quarantined records are never eligible
    mode: str  # "group" | "source" | "global"
    key_name: str  # what the key is, for the summary and the report


def method_names() -> list[str]:
    return sorted(METHOD_NAMES)


def get_method(name: str) -> ModuleType:
    """The module implementing method `name` (imported on first use: some need heavy libraries)."""
    return importlib.import_module(METHODS[check_method(name)])


def ranking(config: RunConfig, table: ScoreTable) -> Ranking:
    """Rank every row of `table` by ``config.selection.method``."""
    return get_method(config.selection.method).rank(config, table)


def ranker(config: RunConfig, run: RunDir) -> Callable[[ScoreTable], Ranking]:
    """A function ranking pieces of the score table one at a time (select out of core): what the
    method computes over the whole corpus first (DSIR's n-gram weights) is computed once, here.
    A piece's ranking equals that of its rows in the whole table."""
    module = get_method(config.selection.method)
    if hasattr(module, "ranker"):
        return module.ranker(config, run)
    return lambda table: module.rank(config, table)


def ranking_fingerprint(config: RunConfig, run: RunDir) -> str:
    """What the configured method's ranking reads besides the scores and the selection config
    (a reference file, the inputs of its own artifacts); "" when nothing."""
    module = get_method(config.selection.method)
    return module.fingerprint(config, run) if hasattr(module, "fingerprint") else ""


def retention_mode(config: RunConfig) -> str:
    """The retention mode the configured method uses: its own (``MODE`` in its module) or ``selection.mode``."""
    return getattr(get_method(config.selection.method), "MODE", config.selection.mode)


def ranking_plan(config: RunConfig, run: RunDir) -> list[str]:
    """Dry-run lines for the configured method's own corpus pass ([] when it has none)."""
    module = get_method(config.selection.method)
    return module.plan(config, run) if hasattr(module, "plan") else []


def prepare(config: RunConfig, run: RunDir, progress: Any = None) -> dict[str, Any]:
    """Run the configured method's corpus pass if it has one (a no-op when cached); returns counts."""
    module = get_method(config.selection.method)
    return module.prepare(config, run, progress) if hasattr(module, "prepare") else {}
