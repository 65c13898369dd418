"""Select's decision rule: keep/reject every record of the score table under the token budget.

Per unit (group, source or everything, ``Ranking.mode``): records best first (key descending,
then the seeded id hash), source floors forced in and caps ruled out, the unscored records' random
share taken first, then the closest prefix to the unit's budget. A source's floor and cap bound
what it keeps whatever ranks its records: its random share (unscored records in the seeded random
order) is held between floor and cap too, and its ranked records fill the rest of both. :func:`decide` returns
:class:`Decisions` (kept, a reason code and a rank per record, per-unit figures);
:mod:`mira.stages.select` writes them. Memory is the corpus's: see :func:`_unit_order`; above
``selection.in_memory_max_records`` select decides out of core instead (:mod:`mira.selection.out_of_core`,
the same decisions in bounded memory).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from mira.artifacts.selection import REASON_CODE, DecisionReason
from mira.core.config import ConfigError, RunConfig
from mira.scoring.table import ScoreTable
from mira.selection.rankings import Ranking

log = logging.getLogger(__name__)

NO_REASON = 255  # not a code of REASONS: a record left without a decision is a bookkeeping error


@dataclass
class Decisions:
    kept: np.ndarray
    reason: np.ndarray  # uint8 codes of REASONS
    rank: np.ndarray  # int32 (int64 past 2**31 records), 0 where the record was not ranked (not eligible)
    units: dict[str, dict[str, Any]]


def decide(config: RunConfig, table: ScoreTable, rank_by: Ranking) -> Decisions:
    """Keep/reject every record: budget per unit, source floors and caps, deterministic ties."""
    sel = config.selection
    check_bounds(config, table.sources)
    n = len(table.tokens)
    tokens = table.tokens
    if rank_by.mode == "group":
        unit_of, unit_names = table.group_idx, table.groups
    elif rank_by.mode == "source":
        unit_of, unit_names = table.source_idx, table.sources
    else:
        unit_of, unit_names = np.zeros(n, dtype=np.int32), ["all"]
    total = int(tokens.sum())
    source_tokens = np.bincount(table.source_idx, weights=tokens, minlength=len(table.sources))
    floor_share = np.array([sel.floor.get(s, 0.0) for s in table.sources])
    cap_share = np.array([sel.cap.get(s, 1.0) for s in table.sources])
    floor_tokens, cap_tokens = floor_share * source_tokens, cap_share * source_tokens
    random_kept = np.zeros(len(table.sources))  # tokens of each source its random share kept
    # The random share of a source's bounds is that of its unscored tokens among the ones it can keep
    # (quarantined records never are): with the ranked rest it keeps floor to cap of all its tokens.
    usable = np.bincount(table.source_idx[~table.quarantined], weights=tokens[~table.quarantined],
                         minlength=len(table.sources))
    scale = np.divide(source_tokens, usable, out=np.ones_like(source_tokens), where=usable > 0)

    kept = np.zeros(n, dtype=bool)
    reason = np.full(n, NO_REASON, dtype=np.uint8)
    rank = np.zeros(n, dtype=np.int32 if n < 2**31 else np.int64)
    reason[table.quarantined] = REASON_CODE[DecisionReason.QUARANTINED]
    unscored = ~table.quarantined & ~rank_by.eligible
    reason[unscored] = REASON_CODE[DecisionReason.UNSCORED]
    fraction = sel.budget_share(total)
    order, starts = _unit_order(rank_by, table.tie, unit_of, len(unit_names))
    units: dict[str, dict[str, Any]] = {}
    for u, name in enumerate(unit_names):
        members = unit_of == u
        unit_tokens = int(tokens.sum(where=members))  # (where=: no gathered copy of the unit's tokens)
        budget = fraction * unit_tokens
        idx = order[starts[u]:starts[u] + np.count_nonzero(members & rank_by.eligible)]  # its eligible records
        rank[idx] = np.arange(1, len(idx) + 1, dtype=rank.dtype)
        random_share = 0.0 if sel.unscored != "random" else _random_share(
            members & unscored, table, fraction, kept, reason, (floor_share * scale, cap_share * scale), random_kept)
        if sel.floor or sel.cap:
            # The ranked records of a source fill what its random share left of its floor and cap.
            forced, capped = _floors_and_caps(idx, table.source_idx, tokens, floor_tokens - random_kept,
                                              cap_tokens - random_kept)
            candidates = idx[~forced & ~capped]
        else:  # the common case: no copy of the unit's order
            forced = capped = np.zeros(len(idx), dtype=bool)
            candidates = idx
        room = budget - random_share - tokens[idx[forced]].sum()
        taken = _closest_prefix(tokens, candidates, room)
        kept[idx[forced]] = True
        kept[candidates[:taken]] = True
        reason[idx[forced]] = REASON_CODE[DecisionReason.KEPT_FLOOR]
        reason[candidates[:taken]] = REASON_CODE[DecisionReason.KEPT]
        reason[candidates[taken:]] = REASON_CODE[DecisionReason.BELOW_CUTOFF]
        reason[idx[capped]] = REASON_CODE[DecisionReason.SOURCE_CAP]
        cutoff = float(rank_by.key[candidates[taken - 1]]) if taken else None
        units[name] = {"tokens_in": unit_tokens, "budget_tokens": round(budget, 1),
                       "unscored_share_tokens": round(random_share, 1),
                       "kept_tokens": int(tokens.sum(where=members & kept)),
                       "cutoff": cutoff, "eligible_records": int(len(idx)),
                       "records_in": int(members.sum())}
    if (reason == NO_REASON).any():
        raise RuntimeError("selection bookkeeping error: a record got no decision")
    if sel.floor:
        kept_tokens = np.bincount(table.source_idx[kept], weights=tokens[kept], minlength=len(table.sources))
        warn_unmet_floors(config, table.sources, kept_tokens, floor_tokens, source_tokens)
    return Decisions(kept, reason, rank, units)


def check_bounds(config: RunConfig, sources: list[str]) -> None:
    unknown = sorted((set(config.selection.floor) | set(config.selection.cap)) - set(sources))
    if unknown:
        raise ConfigError(f"selection floor/cap name unknown sources: {', '.join(unknown)}")


def nan_key_error() -> RuntimeError:
    return RuntimeError("ranking error: an eligible record has a NaN key")


def warn_unmet_floors(config: RunConfig, sources: list[str], kept_tokens: np.ndarray, floor_tokens: np.ndarray,
                      source_tokens: np.ndarray) -> None:
    """A floor is a guarantee: say so where too few of a source's records could be kept to meet it."""
    if not config.selection.floor:
        return
    for s, name in enumerate(sources):
        if name in config.selection.floor and kept_tokens[s] < floor_tokens[s] - 1e-9:
            log.warning("selection.floor for %s (%.0f%%) not met: %.1f%% of its tokens kept; its other records "
                        "cannot be (unscored with selection.unscored: reject, or not ranked by method %s)", name,
                        100 * config.selection.floor[name], 100 * kept_tokens[s] / max(source_tokens[s], 1),
                        config.selection.method)


def _unit_order(rank_by: Ranking, tie: np.ndarray, unit_of: np.ndarray, n_units: int) -> tuple[np.ndarray, np.ndarray]:
    """Every record's index, unit by unit, best first within a unit (key descending, then the seeded
    id hash), each unit's eligible records before the rest; and where each unit starts in it.

    A record that is not eligible sorts on a NaN key, after every number, so the eligible records
    are a prefix of their unit's run and no filtered copy of the order is made. The whole-corpus
    sort is select's memory peak: one key copy and lexsort's int64 order, 16 bytes a record beyond
    the table, then 4 (the order as int32 below 2**31 records); a negated key copy and a filtered
    copy of the order would take 25.
    """
    n = len(unit_of)
    # Unit -1 (group mode: a source without a group, every record quarantined) sorts first.
    starts = np.cumsum(np.bincount(unit_of + 1, minlength=n_units + 1))[:n_units]
    sort_key = np.full(n, np.nan)
    np.negative(rank_by.key, out=sort_key, where=rank_by.eligible)
    if np.count_nonzero(np.isnan(sort_key)) != n - np.count_nonzero(rank_by.eligible):
        raise nan_key_error()
    order = np.lexsort((tie, sort_key, unit_of))  # lexsort's last key is the primary one
    del sort_key
    if n < 2**31:
        order = order.astype(np.int32)
    return order, starts


def _random_share(members: np.ndarray, table: ScoreTable, fraction: float, kept: np.ndarray,
                  reason: np.ndarray, bounds: tuple[np.ndarray, np.ndarray], random_kept: np.ndarray) -> float:
    """Keep `fraction` of each source's unscored tokens by a seeded random draw, held between the
    source's floor and cap (`bounds`: shares per source); returns the tokens that takes from the
    unit's budget (so scored records compete for the rest) and adds each source's to `random_kept`."""
    floor_share, cap_share = bounds
    used = 0.0
    for s in np.unique(table.source_idx[members]):
        idx = np.flatnonzero(members & (table.source_idx == s))
        idx = idx[np.argsort(table.tie[idx], kind="stable")]  # the seeded id hash: a random order
        unscored_tokens = float(table.tokens[idx].sum())
        share = fraction * unscored_tokens
        taken = _closest_prefix(table.tokens, idx, share)
        bounded = _within(table.tokens, idx, taken, floor_share[s] * unscored_tokens, cap_share[s] * unscored_tokens)
        if bounded != taken:  # a floor or cap moved it: the budget pays for what is really kept
            taken, share = bounded, float(table.tokens[idx[:bounded]].sum())
        kept[idx[:taken]] = True
        reason[idx[:taken]] = REASON_CODE[DecisionReason.UNSCORED_KEPT]
        reason[idx[taken:]] = REASON_CODE[DecisionReason.UNSCORED_BELOW]
        random_kept[s] += float(table.tokens[idx[:taken]].sum())
        used += share
    return used


def _within(tokens: np.ndarray, idx: np.ndarray, taken: int, floor: float, cap: float) -> int:
    """`taken` moved to the shortest prefix of `idx` that reaches `floor` tokens, then to the longest
    that stays within `cap` (as for ranked records: a floor is reached, a cap never passed; the cap wins)."""
    running = np.cumsum(tokens[idx])
    if floor > 0 and (running[taken - 1] if taken else 0) < floor - 1e-9:
        taken = min(int(np.searchsorted(running, floor - 1e-9, side="left")) + 1, len(idx))
    return min(taken, int(np.searchsorted(running, cap + 1e-9, side="right")))


def _floors_and_caps(idx: np.ndarray, source_idx: np.ndarray, tokens: np.ndarray, floor_tokens: np.ndarray,
                     cap_tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Which of the ranked records `idx` a source floor forces in, and which a source cap rules out."""
    forced = np.zeros(len(idx), dtype=bool)
    capped = np.zeros(len(idx), dtype=bool)
    sources = source_idx[idx]
    for s in np.unique(sources):
        mine = sources == s
        running = np.cumsum(tokens[idx[mine]])
        capped[mine] = running > cap_tokens[s] + 1e-9
        # A floor is a guarantee: keep the source's best records until the floor is reached.
        forced[mine] = ((running - tokens[idx[mine]]) < floor_tokens[s] - 1e-9) & ~capped[mine]
    return forced, capped


def _closest_prefix(tokens: np.ndarray, idx: np.ndarray, budget: float) -> int:
    """How many of the records `idx`, best first, bring the kept tokens closest to `budget` (never
    over by more than the record that crosses it, never under by more than it)."""
    if budget <= 0 or len(idx) == 0:
        return 0
    running = tokens[idx]
    np.cumsum(running, out=running)  # in the gathered copy: one array of the unit's size, not two
    within = int(np.searchsorted(running, budget, side="right"))
    if within < len(running):
        before = running[within - 1] if within else 0
        if running[within] - budget < budget - before:
            within += 1
    return within
