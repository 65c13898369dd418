"""How much discovery each group gets: fewer judgments and anchors where the tokens are few.

Discovery's judgments and anchor cards are the teacher's most expensive requests (free-form
output), and every anchor multiplies a group's annotation requests. A group holding under
``discovery.small_group_share`` of the corpus's usable tokens moves few tokens whatever its
selection does, so it gets ``small_group_records`` judgments and ``small_group_anchors`` anchors;
the minutes saved go to labels where the tokens are (:mod:`mira.rubrics.allocation`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from mira.core.config import DiscoveryConfig


@dataclass(frozen=True)
class GroupBudget:
    records: int   # free-form judgments asked
    anchors: int   # anchor dimensions kept (one card each, more if cards are rejected)
    share: float   # the group's share of the corpus's usable tokens
    small: bool


def discovery_budget(dcfg: DiscoveryConfig, groups: Iterable[Any], tokens: Mapping[str, int]
                     ) -> dict[str, GroupBudget]:
    """Per group id (groups: objects with ``id`` and ``sources``; tokens: usable tokens per source)."""
    groups = list(groups)
    total = sum(max(int(tokens.get(s, 0)), 0) for g in groups for s in g.sources)
    out: dict[str, GroupBudget] = {}
    for group in groups:
        share = sum(max(int(tokens.get(s, 0)), 0) for s in group.sources) / total if total else 1.0
        small = share < dcfg.small_group_share
        records, anchors = dcfg.records_per_group, dcfg.anchors_per_group
        if small:
            # Never below what one anchor needs (points from min_records records).
            records = min(records, max(dcfg.small_group_records, dcfg.min_records))
            anchors = min(anchors, dcfg.small_group_anchors)
        out[group.id] = GroupBudget(records, anchors, share, small)
    return out
