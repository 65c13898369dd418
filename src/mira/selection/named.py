"""Named selections: any number of selections side by side in one run directory.

Each selection is a folder ``selection/<name>/`` holding its kept records (``<source>/<shard>.*``),
its per-record decisions (``_decisions/``) and its ``summary.json`` (which also records the name and
the fingerprint it was built from). The name defaults to method, mode and budget
(``mira-group-50pct``, ``random-source-3000tok``) or is set with ``selection.name``; writing one
selection never touches another, so `mira compare` can keep one per method.

``selection/_current.json`` names the selection the last ``mira select`` (or ``mira run``) wrote:
the report's sections read that one, and `mira status` marks it. Selection and source names cannot
start with ``_`` or ``.``, so the pointer, the decisions folder and the temporary build folders
never collide with a name.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from mira.core.config import ConfigError, RunConfig
from mira.run.rundir import RunDir

log = logging.getLogger(__name__)

ROOT = "selection"
CURRENT = "_current.json"
SUMMARY = "summary.json"
# Methods whose ranking fixes the retention mode whatever `selection.mode` says (each ranking's
# `MODE`): the default name must say the mode the selection really used. tests/test_selections.py
# checks that each method's summary agrees with its name.
FIXED_MODE = {"random": "source", "global_rubric": "global"}


def effective_mode(method: str, mode: str) -> str:
    return FIXED_MODE.get(method, mode)


def budget_label(budget: float, unit: str | None = None) -> str:
    """``0.5`` -> ``50pct``, ``0.125`` -> ``12.5pct``, ``3000`` -> ``3000tok`` (a name-safe budget).

    `unit` ("fraction" or "tokens", from ``SelectionConfig.budget_unit``) wins over the value's size,
    so ``budget_tokens: 1`` is "1tok", not "100pct"."""
    if unit == "fraction" or (unit is None and budget <= 1):
        return f"{round(budget * 100, 4):g}pct"
    return f"{round(budget):d}tok"


def default_name(method: str, mode: str, budget: float, unit: str | None = None) -> str:
    return f"{method}-{effective_mode(method, mode)}-{budget_label(budget, unit)}"


def selection_name(config: RunConfig) -> str:
    sel = config.selection
    unit, value = sel.budget_unit()
    return sel.name or default_name(sel.method, sel.mode, value, unit)


def selection_root(run: RunDir) -> Path:
    return run.path(ROOT)


def selection_dir(run: RunDir, name: str) -> Path:
    return run.path(ROOT, name)


def read_summary(path: Path) -> dict[str, Any] | None:
    """The summary of the selection folder `path` as stored JSON, validated by its catalogue schema
    (:class:`mira.artifacts.selection.SelectionSummary`); None when missing or invalid."""
    from mira.artifacts.selection import read_selection_summary
    from mira.run.artifact import dump

    summary = read_selection_summary(path)
    return None if summary is None else dump(summary)


def list_selections(run: RunDir) -> list[dict[str, Any]]:
    """Every finished selection of the run, oldest first: name, path, current, and its summary's
    method, mode, budget and totals. A folder without a readable summary is not a selection."""
    root = selection_root(run)
    if not root.is_dir():
        return []
    current = current_name(run)
    found = []
    for path in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(("_", "."))):
        summary = read_summary(path)
        if summary is None:
            continue
        found.append({"name": path.name, "path": str(path), "current": path.name == current,
                      "method": summary.get("method"), "mode": summary.get("mode"), "budget": summary.get("budget"),
                      "totals": summary.get("totals", {}), "mtime": (path / SUMMARY).stat().st_mtime})
    found.sort(key=lambda s: (s["mtime"], s["name"]))
    return found


def current_name(run: RunDir) -> str | None:
    from mira.artifacts.selection import CURRENT_SELECTION

    current = CURRENT_SELECTION.read(run)
    return None if current is None else current.name


def current_selection(run: RunDir) -> Path | None:
    """The selection the report shows: the one the last `mira select` wrote, else the most recent.

    A run written before selections had names keeps its single selection in ``selection/`` itself;
    it is still read (never rewritten) until a new selection is made.
    """
    name = current_name(run)
    if name and read_summary(selection_dir(run, name)) is not None:
        return selection_dir(run, name)
    selections = list_selections(run)
    if selections:
        return Path(selections[-1]["path"])
    if read_summary(selection_root(run)) is not None:
        return selection_root(run)
    return None


def set_current(run: RunDir, name: str) -> None:
    from mira.artifacts.selection import CURRENT_SELECTION, CurrentSelection

    CURRENT_SELECTION.save(run, CurrentSelection(name=name))


def require_selection(run: RunDir, name: str) -> Path:
    """The folder of a finished selection, or a one-line error naming the ones that exist."""
    path = selection_dir(run, name)
    if read_summary(path) is None:
        names = ", ".join(s["name"] for s in list_selections(run)) or "none"
        raise ConfigError(f"no selection {name!r} in {run.root} (selections: {names}); run `mira select` first")
    return path
