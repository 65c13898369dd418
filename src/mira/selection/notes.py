"""What a finished selection should tell its user: lines for the run notes and the log.

Read from the selection summary (:mod:`mira.stages.select`), so they can be shown again for any
selection without deciding anything anew.
"""

from __future__ import annotations

from typing import Any

# A source of a group that keeps less than this share of the budget's fraction is named: the group's
# cutoff all but dropped it.
STARVED = 0.25


def selection_notes(summary: dict[str, Any]) -> list[str]:
    """Every line below, for a selection summary."""
    return empty_budget_notes(summary) + starved_source_notes(summary)


def empty_budget_notes(summary: dict[str, Any]) -> list[str]:
    """A line naming the retention units whose budget keeps none of their eligible records (a budget
    below the smallest record: almost always a unit mix-up, e.g. a token count meant as a fraction)."""
    empty = [name for name, unit in summary["units"].items() if unit["eligible_records"] and not unit["kept_tokens"]]
    if not empty:
        return []
    where = "all units" if len(empty) == len(summary["units"]) else f"units {', '.join(empty)}"
    return [f"budget {summary.get('budget_label', summary['budget'])} keeps nothing in {where}; "
            "raise selection.budget_fraction or selection.budget_tokens"]


def starved_source_notes(summary: dict[str, Any]) -> list[str]:
    """In group mode, a line per group whose one cutoff all but dropped a scored source.

    One cutoff compares the records of a group's sources on their aggregates. Where the sources'
    reliable anchors differ (the mask is per source and anchor), those aggregates average different
    anchors and are not on one scale; measured on demo-full with 72 labels per group, the C headers
    (aggregate over two anchors) kept 0% of their tokens and the stdlib code (one other anchor) 76%.
    """
    if summary.get("mode") != "group":
        return []
    share = float(summary.get("budget_share") or 0.0)
    members: dict[str, list[str]] = {}
    for source, group in (summary.get("source_groups") or {}).items():
        if group is not None:
            members.setdefault(group, []).append(source)
    notes = []
    for group, sources in sorted(members.items()):
        stats = {s: summary["sources"][s] for s in sources if summary["sources"][s]["tokens_in"]}
        kept = {s: v["kept_tokens"] / v["tokens_in"] for s, v in stats.items()}
        starved = [s for s, v in stats.items()
                   if v["tokens_in"] > v["unscored_tokens"] and kept[s] < STARVED * share]
        if len(stats) < 2 or not starved:
            continue
        shares = ", ".join(f"{s} {kept[s]:.0%}" for s in sorted(stats))
        notes.append(f"group {group}: {', '.join(starved)} kept almost none of its tokens under the group's one "
                     f"cutoff (kept shares: {shares}; budget {share:.0%}). Sources whose reliable anchors differ "
                     "are compared on averages of different anchors (report: reliability); selection.mode: "
                     "source keeps each source's share")
    return notes
