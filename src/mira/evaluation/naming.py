"""Which name each compared selection is built under: `mira compare` never replaces a selection it
did not build.

A compared method's default name (``mira-group-50pct``) is also the name `mira select` gives the
run's own selection. When the two are built from different settings (``--set
'reliability.exclude=[…]'`` on compare, say), rebuilding under that name would replace the user's
selection while select's done marker still vouches for it: `mira select` would say "skipped
(done)" and the report would show compare's version. So compare builds such a selection under
``<name>-compare`` instead, and keeps a ledger (``compare/selections.json``) of what it built: a
folder is compare's to rebuild only when the ledger holds its fingerprint and select's marker or
the current-selection pointer does not name it. A selection with the same fingerprint is reused
whoever built it (reading never replaces anything).
"""

from __future__ import annotations

from typing import Any

from mira.artifacts.compare import COMPARE_SELECTIONS, ComparedSelections
from mira.core.config import ConfigError, MethodSpec, RunConfig
from mira.run.rundir import RunDir
from mira.selection.build import selection_fingerprint
from mira.selection.named import ROOT, SUMMARY, current_name, read_summary, selection_dir, selection_name

SUFFIX = "-compare"


def own_names(run: RunDir, methods: list[tuple[MethodSpec, RunConfig]]) -> list[tuple[MethodSpec, RunConfig]]:
    """`methods` with each config renamed to ``<name>-compare`` where building it under its own name
    would replace a selection compare did not build (needs scores: it compares fingerprints)."""
    built = built_by_compare(run)
    guarded = select_names(run)
    out = []
    for spec, config in methods:
        name = selection_name(config)
        summary = read_summary(selection_dir(run, name))
        if summary is None or summary.get("fingerprint") == selection_fingerprint(config, run):
            out.append((spec, config))  # nothing there, or the same selection: build or reuse it
            continue
        if name not in guarded and built.get(name) == summary.get("fingerprint"):
            out.append((spec, config))  # compare's own, from other settings: rebuilt in place
            continue
        renamed = config.model_copy(update={"selection": config.selection.model_copy(
            update={"name": name + SUFFIX})})
        other = read_summary(selection_dir(run, name + SUFFIX))
        if (other is not None and other.get("fingerprint") != selection_fingerprint(renamed, run)
                and (name + SUFFIX in guarded or built.get(name + SUFFIX) != other.get("fingerprint"))):
            raise ConfigError(f"selection/{name} and selection/{name}{SUFFIX} hold selections mira compare did "
                              f"not build, from other settings; it replaces neither: move one away or rename it")
        out.append((spec, renamed))
    return out


def built_by_compare(run: RunDir) -> dict[str, str]:
    """Selection name -> the fingerprint compare built it with (the ledger; empty before any)."""
    ledger = COMPARE_SELECTIONS.read(run)
    return dict(ledger.built) if ledger is not None else {}


def record_built(run: RunDir, name: str, fingerprint: str | None) -> None:
    """Add one selection compare just built to the ledger (written at once: an interrupted compare
    still knows what it built)."""
    built = built_by_compare(run)
    if fingerprint is None or built.get(name) == fingerprint:
        return
    COMPARE_SELECTIONS.save(run, ComparedSelections(built={**built, name: fingerprint}))


def select_names(run: RunDir) -> set[str]:
    """The selections `mira select` vouches for: its done marker's and the current-selection pointer's."""
    names: set[str] = set()
    marker: dict[str, Any] | None = run.done("select")
    for output in (marker or {}).get("outputs") or []:
        parts = str(output).split("/")
        if len(parts) == 3 and parts[0] == ROOT and parts[2] == SUMMARY:
            names.add(parts[1])
    current = current_name(run)
    if current:
        names.add(current)
    return names
