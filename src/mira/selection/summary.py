"""A selection's summary: what it kept, rejected and drew at random, per source, group and in all.

Counted shard by shard from :class:`mira.selection.decided.Decided`, so a selection decided out of
core is summed in the same bounded memory it was decided in, and to the same figures.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mira.artifacts.selection import REASON_CODE, UNSCORED_REASONS
from mira.core.config import RunConfig
from mira.selection.decided import Decided, ShardDecisions

_UNSCORED_CODES = [REASON_CODE[r] for r in UNSCORED_REASONS]
FIELDS = ("records_in", "tokens_in", "kept", "kept_tokens", "rejected", "rejected_tokens", "quarantined",
          "unscored", "unscored_tokens", "unscored_kept", "unscored_kept_tokens")


def shard_counts(d: ShardDecisions) -> dict[str, int]:
    """The summary's counts over one shard's records; the books must balance before anything is written."""
    kept, quarantined, tokens = d.kept, d.quarantined, d.tokens
    rejected = ~kept & ~quarantined
    unscored = np.isin(d.reason, _UNSCORED_CODES)
    drawn = unscored & kept  # kept by the seeded random draw, not by rank: what the user must see first
    out = {"records_in": len(tokens), "tokens_in": int(tokens.sum()),
           "kept": int(kept.sum()), "kept_tokens": int(tokens[kept].sum()),
           "rejected": int(rejected.sum()), "rejected_tokens": int(tokens[rejected].sum()),
           "quarantined": int(quarantined.sum()),
           "unscored": int(unscored.sum()), "unscored_tokens": int(tokens[unscored].sum()),
           "unscored_kept": int(drawn.sum()), "unscored_kept_tokens": int(tokens[drawn].sum())}
    # Every record is exactly one of kept, rejected, quarantined.
    if out["records_in"] != out["kept"] + out["rejected"] + out["quarantined"] or \
            out["tokens_in"] != out["kept_tokens"] + out["rejected_tokens"] + int(tokens[quarantined].sum()):
        raise RuntimeError("selection bookkeeping error: kept + rejected + quarantined != records in")
    return out


def summarize(config: RunConfig, decided: Decided) -> dict[str, Any]:
    sel = config.selection
    per_source = {name: dict.fromkeys(FIELDS, 0) for name in decided.sources}
    per_group = {name: dict.fromkeys(FIELDS, 0) for name in decided.groups}
    totals = dict.fromkeys(FIELDS, 0)
    first_group: dict[int, int] = {}  # source -> group of its first record
    for _, _, d in decided.shards():
        counts = shard_counts(d)
        targets = [per_source[decided.sources[d.source]], totals]
        if len(d.tokens):
            first_group.setdefault(d.source, d.group)
            if d.group >= 0:
                targets.append(per_group[decided.groups[d.group]])
        for target in targets:
            for key, value in counts.items():
                target[key] += value
    # Decide summed each unit's kept tokens on its own: the two must agree.
    if sum(unit["kept_tokens"] for unit in decided.units.values()) != totals["kept_tokens"]:
        raise RuntimeError("selection bookkeeping error: the units' kept tokens do not add up to the totals")
    budget_unit, budget_value = sel.budget_unit()
    return {"method": sel.method, "mode": decided.mode, "key": decided.key_name, "budget": budget_value,
            "budget_kind": "fraction of tokens" if budget_unit == "fraction" else "tokens",
            "budget_label": sel.budget_label(), "budget_share": sel.budget_share(totals["tokens_in"]),
            "floor": dict(sel.floor), "cap": dict(sel.cap), "seed": sel.seed, "unscored_policy": sel.unscored,
            "totals": totals, "sources": per_source, "groups": per_group, "units": decided.units,
            "source_groups": {name: (decided.groups[first_group[s]] if first_group.get(s, -1) >= 0 else None)
                              for s, name in enumerate(decided.sources)}}
