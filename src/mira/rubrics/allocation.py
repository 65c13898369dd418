"""Where the teacher's labels go: across groups and across the sources of a group, by token share.

A selection keeps tokens, so a label is worth most where the tokens are: a group holding 64% of
a corpus's tokens and one holding 0.3% should not get the same dozen labels. Every group still
gets ``min_per_group`` labels (a student and its check need some rows) and every source of a group
``min_per_source`` (a source with no label is never judged inside its group); the rest follows the
token shares. A source gives at most the records it has; what it cannot give goes to the others.

Pure functions of counts: the dry run prints the same allocation that annotate samples.
"""

from __future__ import annotations

import math
from collections.abc import Mapping


def _shares(weights: Mapping[str, float], total: int, floors: Mapping[str, int],
            caps: Mapping[str, int]) -> dict[str, int]:
    """`total` units over the keys of `weights` in proportion to the weights, each key between its
    floor and its cap (a cap below the floor wins): keys whose share falls below their floor (or
    above their cap) are pinned there and the rest is shared again, then whole units go by largest
    remainder. Deterministic (ties by larger weight, then name)."""
    pinned: dict[str, int] = {}
    ideal: dict[str, float] = {}
    while True:
        free = [k for k in weights if k not in pinned]
        remaining = total - sum(pinned.values())
        weight = sum(max(weights[k], 0.0) for k in free)
        ideal = {k: remaining * max(weights[k], 0.0) / weight if weight > 0 else remaining / len(free) for k in free}
        low = [k for k in free if ideal[k] < min(floors.get(k, 0), caps[k])]
        high = [k for k in free if ideal[k] > caps[k]]
        for k in low:
            pinned[k] = min(floors.get(k, 0), caps[k])
        if not low:
            for k in high:
                pinned[k] = caps[k]
        if not free or not (low or high):
            break
    out = dict(pinned) | {k: int(math.floor(v)) for k, v in ideal.items()}
    left = total - sum(out.values())
    for k in sorted(ideal, key=lambda k: (-(ideal[k] - math.floor(ideal[k])), -weights[k], k)):
        if left <= 0:
            break
        if out[k] < caps[k]:
            out[k] += 1
            left -= 1
    return {k: out[k] for k in weights}


def allocate_labels(tokens: Mapping[str, Mapping[str, int]], available: Mapping[str, int], total: int,
                    min_per_group: int, min_per_source: int) -> dict[str, dict[str, int]]:
    """Label records per group and source: ``{group: {source: n}}``.

    `tokens` is ``{group: {source: tokens}}`` (from the inventory), `available` the usable records of
    each source, `total` the labels of the whole run. Floors come first and win over `total` (a run
    never leaves a group or a source below its floor, unless it has fewer records than that).
    """
    group_caps = {g: sum(available.get(s, 0) for s in sources) for g, sources in tokens.items()}
    group_weights = {g: float(sum(sources.values())) for g, sources in tokens.items()}
    per_group = _shares(group_weights, total, dict.fromkeys(tokens, min_per_group), group_caps)
    out: dict[str, dict[str, int]] = {}
    for group, sources in tokens.items():
        caps = {s: available.get(s, 0) for s in sources}
        weights = {s: float(t) for s, t in sources.items()}
        out[group] = _shares(weights, per_group[group], dict.fromkeys(sources, min_per_source), caps)
    return out


def allocation_lines(allocation: Mapping[str, Mapping[str, int]], tokens: Mapping[str, Mapping[str, int]]) -> list[str]:
    """One line per group for the dry run and the run notes: labels per source beside token shares."""
    corpus = sum(sum(s.values()) for s in tokens.values()) or 1
    lines = []
    for group, per_source in allocation.items():
        share = sum(tokens[group].values()) / corpus
        parts = ", ".join(f"{s} {n}" for s, n in per_source.items())
        lines.append(f"{group}: {sum(per_source.values())} labels for {share:.1%} of the tokens ({parts})")
    return lines
