"""Cells named in the config (``reliability.exclude``, ``compare.methods[].exclude``) against the
anchors the scores have: an entry naming no anchor would exclude nothing, silently.

The config checks the source of each "source/anchor" entry when it loads (the sources are in the
config); the anchors exist only once discover has written the rubrics and score has used them, so
select and compare check them here, before they write anything. The anchors are the ones the
scores were computed on (``scores/summary.json``), which are what the mask is applied to.
"""

from __future__ import annotations

from mira.artifacts.scores import SCORES_SUMMARY
from mira.core.config import ConfigError, RunConfig
from mira.core.config_base import did_you_mean
from mira.run.rundir import RunDir

ANY = "*"


def named_cells(config: RunConfig) -> list[tuple[str, list[str]]]:
    """(where, entries) of every list of cells the config names."""
    out = [("reliability.exclude", list(config.reliability.exclude))]
    out += [(f"compare.methods[{i}].exclude", list(spec.exclude)) for i, spec in enumerate(config.compare.methods)]
    return [(where, entries) for where, entries in out if entries]


def check_cells(run: RunDir, cells: list[tuple[str, list[str]]]) -> None:
    """Raise a one-line ConfigError for the first entry whose anchor no group of its source has.
    Before score has finished there is nothing to check against (the stage says so itself)."""
    if not cells:
        return
    summary = SCORES_SUMMARY.read(run)
    if summary is None:
        return
    anchors = {group: list(entry.anchors) for group, entry in summary.groups.items()}
    group_of = {source: counts.group for source, counts in summary.sources.items()}
    for where, entries in cells:
        for entry in entries:
            source, anchor = entry.split("/", 1)
            if anchor == ANY:
                continue
            if source == ANY:
                if not any(anchor in names for names in anchors.values()):
                    listed = "; ".join(f"{g}: {', '.join(names) or 'none'}" for g, names in sorted(anchors.items()))
                    known = sorted({name for names in anchors.values() for name in names})
                    raise ConfigError(f"{where} {entry!r}: no group has an anchor {anchor!r} (anchors by group: "
                                      f"{listed or 'none'}){_close(anchor, known)}")
                continue
            group = group_of.get(source)
            if group is None:  # no usable record (or not scored): none of its cells is used anyway
                continue
            names = anchors.get(group, [])
            if anchor not in names:
                raise ConfigError(f"{where} {entry!r}: group {group} of source {source} has no anchor {anchor!r} "
                                  f"(its anchors: {', '.join(names) or 'none'}){_close(anchor, names)}")


def _close(anchor: str, names: list[str]) -> str:
    # Anchor ids differ in a digit or two ("a07", "a01"): only a closer match is a likely typo.
    hint = did_you_mean(anchor, names, cutoff=0.75)
    return hint if hint.startswith(";") else ""
