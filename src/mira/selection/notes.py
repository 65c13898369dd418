"""What a finished selection should tell its user: lines for the run notes and the log.

Read from the selection summary (:mod:`mira.stages.select`), so they can be shown again for any
selection without deciding anything anew.
"""

from __future__ import annotations

from typing import Any

# A source of a group that keeps less than this share of the budget's fraction is named: the group's
# cutoff all but dropped it.
STARVED = 0.25
# Above this share of unscored tokens a selection is "mostly random": said first, as a warning.
MOSTLY_RANDOM = 0.5


def selection_notes(summary: dict[str, Any]) -> list[str]:
    """Every line below, for a selection summary."""
    return random_share_notes(summary) + empty_budget_notes(summary) + starved_source_notes(summary)


def unscored_share(counts: dict[str, Any]) -> float | None:
    """The share of an entry's usable tokens (quarantined ones left out) that no key ranked: every
    anchor of their source masked, so a seeded random draw decided them (or ``reject`` dropped them).
    None when the entry has no usable tokens."""
    usable = int(counts.get("kept_tokens") or 0) + int(counts.get("rejected_tokens") or 0)
    return int(counts.get("unscored_tokens") or 0) / usable if usable > 0 else None


def ranked_by(summary: dict[str, Any]) -> str:
    """What ranked the selection's scored records: "a reliable score" (MIRA), else the method's key."""
    key = summary.get("key") or "score"
    return "a reliable score" if key == "score" else str(key)


def _unscored_reason(summary: dict[str, Any]) -> str:
    if (summary.get("key") or "score") == "score":
        return "every anchor of their source masked as unreliable"
    return f"no usable {summary.get('key')}"


def _fate(summary: dict[str, Any]) -> str:
    """What happened to unscored records: "random" (a seeded draw kept the budget's share) or "rejected"."""
    if summary.get("unscored_policy") == "reject":
        return "rejected"
    return "random"


def ranking_lines(summary: dict[str, Any]) -> list[str]:
    """What share of the tokens the method's key ranked and what share fell back to random (or was
    rejected unscored), for the whole selection and per group: the first thing to know about it,
    since a selection whose cells are all masked keeps its budget just the same, by a random draw."""
    totals = summary.get("totals") or {}
    share = unscored_share(totals)
    if share is None:
        return []
    if share == 0 and summary.get("key") not in (None, "score"):
        return [f"ranked by {ranked_by(summary)}: 100% of the tokens"]  # a baseline: nothing to fall back from
    fate = _fate(summary)
    lines = [f"ranked by {ranked_by(summary)}: {1 - share:.1%} of the tokens; {fate}: {share:.1%} "
             f"(unscored: {_unscored_reason(summary)})"]
    drawn = totals.get("unscored_kept_tokens")
    if drawn is not None and totals.get("kept_tokens"):
        lines[0] += f"; {drawn / totals['kept_tokens']:.1%} of the kept tokens are a random draw"
    for group, counts in sorted((summary.get("groups") or {}).items()):
        part = unscored_share(counts)
        if part is not None:
            lines.append(f"  {group}: {1 - part:.1%} ranked, {part:.1%} {fate} "
                         f"({int(counts.get('kept_tokens') or 0) + int(counts.get('rejected_tokens') or 0):,} tokens)")
    return lines


def random_share_notes(summary: dict[str, Any]) -> list[str]:
    """A warning line when most of a selection's tokens were not ranked at all (see :func:`ranking_lines`)."""
    warning = random_share_warning(summary)
    return [] if warning is None else [f"{warning[0]}: {warning[1]}"]


def random_share_warning(summary: dict[str, Any]) -> tuple[str, str] | None:
    """(headline, detail) when more than half of the usable tokens were unscored, else None."""
    share = unscored_share(summary.get("totals") or {})
    if share is None or share <= MOSTLY_RANDOM:
        return None
    groups = [g for g, counts in sorted((summary.get("groups") or {}).items())
              if (unscored_share(counts) or 0.0) > MOSTLY_RANDOM]
    where = f" (groups {', '.join(groups)})" if groups else ""
    if _fate(summary) == "rejected":
        head, fate = "most of the tokens were not ranked", "they were rejected (selection.unscored: reject)"
    else:
        head = "most of this selection is random"
        fate = "a seeded random draw, not a score, kept or dropped them (selection.unscored: random)"
    why = ("; the report's reliability section says why (often too few labels)"
           if (summary.get("key") or "score") == "score" else "")
    return head, f"{share:.1%} of its tokens{where} had {_unscored_reason(summary)}, so {fate}{why}"


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
    anchors and are not on one scale: the offset between their students' levels, not quality, can
    leave one source none of its tokens while another keeps most of its own
    (``reliability.anchor_scale: group`` puts the anchors on one scale first).
    """
    if summary.get("mode") != "group" or summary.get("method", "mira") != "mira":
        return []  # (what it explains, different anchors per source, is MIRA's; a baseline has no anchors)
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
