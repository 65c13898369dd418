"""What a comparison measures, from the selections' per-record decisions (no model, no rescoring).

Every selection of a run has one decision row per input record, in the same corpus order
(``selection/<name>/_decisions/<source>/<shard>.parquet``), so methods are compared record by record:

- **retention**: kept share of tokens per source and per group (from each summary);
- **overlap**: ``overlap[a][b]`` = share of a's kept tokens that b kept too (1 on the diagonal; two
  independent random selections at a budget fraction f share about f);
- **length bias**: mean / median token length of kept records against all usable input records,
  overall and per source (a ratio above 1 means the method prefers long records);
- **rank agreement**: Spearman correlation of two methods' ranking keys over the records both ranked;
- **known records**: what each method kept of the records the user marked known-good / known-bad.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mira.core.config import ConfigError, RunConfig
from mira.corpus.sources import SourceInfo
from mira.io.readers import iter_shard
from mira.selection.build import DECISIONS

log = logging.getLogger(__name__)


@dataclass
class Decisions:
    """One selection's decisions in corpus order."""

    ids: np.ndarray  # object (str)
    kept: np.ndarray  # bool
    key: np.ndarray  # float64, NaN where the method did not rank the record
    tokens: np.ndarray  # int64
    usable: np.ndarray  # bool: not quarantined
    source_idx: np.ndarray  # int32, index into the run's sources


def load_decisions(path: Path, infos: list[SourceInfo]) -> Decisions:
    import pyarrow.parquet as pq

    parts: dict[str, list[Any]] = {k: [] for k in ("ids", "kept", "key", "tokens", "usable", "source_idx")}
    for s_index, info in enumerate(infos):
        for shard in info.shards:
            file = path / DECISIONS / info.name / f"{shard.name}.parquet"
            try:
                table = pq.read_table(file, columns=["id", "kept", "reason", "rank", "key", "tokens"])
            except OSError:
                raise ConfigError(f"{path.name}: decisions of {info.name} shard {shard.name} are missing; "
                                  f"the data changed since it was selected (rerun `mira compare`)") from None
            rank = table.column("rank").to_numpy(zero_copy_only=False)
            key = np.array([math.nan if v is None else v for v in table.column("key").to_pylist()], dtype=np.float64)
            ranked = ~np.isnan(np.asarray(rank, dtype=np.float64))
            key[~ranked] = math.nan
            parts["ids"].append(np.array(table.column("id").to_pylist(), dtype=object))
            parts["kept"].append(table.column("kept").to_numpy(zero_copy_only=False).astype(bool))
            parts["key"].append(key)
            parts["tokens"].append(table.column("tokens").to_numpy().astype(np.int64))
            reasons = table.column("reason").to_pylist()
            parts["usable"].append(np.array([not r.startswith("quarantined") for r in reasons], dtype=bool))
            parts["source_idx"].append(np.full(table.num_rows, s_index, dtype=np.int32))
    dtypes = {"ids": object, "kept": bool, "key": np.float64, "tokens": np.int64, "usable": bool,
              "source_idx": np.int32}
    return Decisions(**{k: (np.concatenate(v) if v else np.zeros(0, dtype=dtypes[k])) for k, v in parts.items()})


def check_aligned(decisions: dict[str, Decisions]) -> None:
    """Every selection must describe the same records in the same order, or nothing compares."""
    names = list(decisions)
    for name in names[1:]:
        if not np.array_equal(decisions[name].ids, decisions[names[0]].ids):
            raise ConfigError(f"selections {names[0]} and {name} describe different records; "
                              f"rerun `mira compare` after `mira score`")


# --- metrics ---------------------------------------------------------------------------------

def retention(summary: dict[str, Any]) -> dict[str, Any]:
    def share(entry: dict[str, Any]) -> dict[str, Any]:
        tokens_in = entry.get("tokens_in") or 0
        return {"tokens_in": tokens_in, "kept_tokens": entry.get("kept_tokens", 0),
                "records_in": entry.get("records_in", 0), "kept": entry.get("kept", 0),
                "token_share": round(entry.get("kept_tokens", 0) / tokens_in, 6) if tokens_in else None}

    return {"totals": share(summary.get("totals", {})),
            "sources": {name: share(entry) for name, entry in summary.get("sources", {}).items()},
            "groups": {name: share(entry) for name, entry in summary.get("groups", {}).items()}}


def overlap(decisions: dict[str, Decisions]) -> dict[str, Any]:
    names = list(decisions)
    tokens = next(iter(decisions.values())).tokens if names else np.zeros(0)
    matrix = []
    for a in names:
        kept_a = decisions[a].kept
        total = float(tokens[kept_a].sum())
        matrix.append([_round(float(tokens[kept_a & decisions[b].kept].sum()) / total) if total else None
                       for b in names])
    return {"methods": names, "matrix": matrix,
            "definition": "row method's kept tokens that the column method kept too"}


def length_bias(decisions: dict[str, Decisions], sources: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, d in decisions.items():
        usable = d.usable
        kept = d.kept & usable
        entry = {**_lengths(d.tokens[usable], "input"), **_lengths(d.tokens[kept], "kept")}
        entry["mean_ratio"] = _ratio(entry["kept_mean"], entry["input_mean"])
        entry["median_ratio"] = _ratio(entry["kept_median"], entry["input_median"])
        per_source = {}
        for s_index, source in enumerate(sources):
            mine = d.source_idx == s_index
            if (mine & kept).any():
                per_source[source] = _ratio(float(d.tokens[mine & kept].mean()), float(d.tokens[mine & usable].mean()))
        entry["source_mean_ratio"] = per_source
        out[name] = entry
    return out


def rank_agreement(decisions: dict[str, Decisions]) -> dict[str, Any]:
    from mira.core.stats import spearman

    names = list(decisions)
    matrix, counts = [], []
    for a in names:
        row, row_n = [], []
        for b in names:
            both = ~np.isnan(decisions[a].key) & ~np.isnan(decisions[b].key)
            row_n.append(int(both.sum()))
            row.append(_round(spearman(decisions[a].key[both], decisions[b].key[both])))
        matrix.append(row)
        counts.append(row_n)
    return {"methods": names, "matrix": matrix, "records": counts,
            "definition": "Spearman correlation of the ranking keys over the records both methods ranked"}


def known_records(config: RunConfig, infos: list[SourceInfo], decisions: dict[str, Decisions],
                  spec: str | list[str] | None) -> dict[str, Any] | None:
    """What each method kept of the records named by `spec` (a record field or a list of ids)."""
    if spec is None or not decisions:
        return None
    first = next(iter(decisions.values()))
    if isinstance(spec, list):
        wanted = set(spec)
        marked = np.array([i in wanted for i in first.ids], dtype=bool)
        found = {str(i) for i in first.ids[marked]}
        described = {"ids": len(wanted), "missing_ids": sorted(wanted - found)[:20],
                     "missing": len(wanted - found)}
    else:
        marked = _field_set(config, infos, spec, len(first.ids))
        described = {"field": spec}
    marked &= first.usable
    out: dict[str, Any] = {**described, "records": int(marked.sum()), "tokens": int(first.tokens[marked].sum()),
                           "methods": {}}
    if not marked.any():
        out["note"] = "no usable record is marked: check the field name or the ids"
        log.warning("compare: %s marks no usable record", spec if isinstance(spec, str) else "the id list")
    for name, d in decisions.items():
        kept = marked & d.kept
        overall = _ratio(float(d.tokens[d.kept].sum()), float(d.tokens[d.usable].sum()))
        out["methods"][name] = {"kept": int(kept.sum()), "kept_tokens": int(d.tokens[kept].sum()),
                                "record_share": _ratio(float(kept.sum()), float(marked.sum())),
                                "token_share": _ratio(float(d.tokens[kept].sum()), float(d.tokens[marked].sum())),
                                "overall_token_share": overall}
    return out


def _field_set(config: RunConfig, infos: list[SourceInfo], field: str, n: int) -> np.ndarray:
    """Rows (corpus order) whose raw record has `field` set: not null, false, 0 or empty."""
    marked = np.zeros(n, dtype=bool)
    row = 0
    for info in infos:
        for shard in info.shards:
            for raw in iter_shard(shard, config.ingest.max_record_bytes, storage=config.storage):
                value = (raw.data or {}).get(field)
                if row >= n:
                    raise ConfigError("the corpus changed since it was selected; rerun `mira compare`")
                marked[row] = value not in (None, False, 0, "", [], {})
                row += 1
    if row != n:
        raise ConfigError("the corpus changed since it was selected; rerun `mira compare`")
    return marked


def _lengths(tokens: np.ndarray, prefix: str) -> dict[str, Any]:
    if not len(tokens):
        return {f"{prefix}_records": 0, f"{prefix}_mean": None, f"{prefix}_median": None}
    return {f"{prefix}_records": int(len(tokens)), f"{prefix}_mean": round(float(tokens.mean()), 2),
            f"{prefix}_median": float(np.median(tokens))}


def _ratio(part: float | None, whole: float | None) -> float | None:
    if part is None or not whole:
        return None
    return _round(part / whole)


def _round(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else round(value, 6)
