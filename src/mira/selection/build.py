"""Building a selection: decide every record under the budget, write the kept records and the summary."""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from mira.artifacts import selection as artifact
from mira.artifacts.scores import SCORES_DONE
from mira.artifacts.selection import REASON_CODE, REASONS, UNSCORED_REASONS, DecisionReason
from mira.core.config import ConfigError, RunConfig
from mira.core.errors import StageNotReady
from mira.core.hashing import fingerprint as make_fingerprint
from mira.core.progress import ProgressFactory
from mira.corpus.freshness import require_ingested_sources
from mira.corpus.sources import SourceInfo, source_infos
from mira.io.digests import shard_digest
from mira.io.files import (
    atomic_path,
    atomic_write_json,
    atomic_write_text,
    hash_files,
    is_atomic_temp,
    remove_own_files,
    swap_in,
)
from mira.io.readers import RawItem, Shard, iter_shard
from mira.run.artifact import dump
from mira.run.rundir import RunDir
from mira.scoring.corpus_scores import shard_scores_path
from mira.scoring.table import ScoreTable, load_score_table  # noqa: F401 - re-exported (their old home)
from mira.selection.card import CARD, card_text
from mira.selection.decide import Decisions, decide  # noqa: F401 - decide re-exported
from mira.selection.named import selection_dir, selection_name
from mira.selection.notes import selection_notes
from mira.selection.outputs import FORMATS, unify_selection, write_shard
from mira.selection.rankings import Ranking, prepare, ranking, ranking_fingerprint

log = logging.getLogger(__name__)

VERSION = "select-v1"
DECISIONS = "_decisions"  # source names cannot start with "_", so this never collides with a source




def selection_fingerprint(config: RunConfig, run: RunDir) -> str:
    """What one selection is built from; stored in its summary so `mira compare` can reuse it."""
    # Selection config + the score fingerprint only: scores never depend on selection settings.
    # A ranking that reads files besides the scores (a reference corpus, its own artifacts) adds them.
    # Reliability settings and the masks' inputs too: the aggregate is computed at join time
    # (mira.scoring.table), so a new threshold or aggregator re-selects without rescoring.
    from mira.scoring.reliability import mask_inputs

    return make_fingerprint(VERSION, config.section_hash("selection", "reliability"), run.require("score"),
                            hash_files(mask_inputs(run)), ranking_fingerprint(config, run))




# --- summary ---------------------------------------------------------------------------------

def summarize(config: RunConfig, table: ScoreTable, decisions: Decisions, rank_by: Ranking) -> dict[str, Any]:
    def counts(members: np.ndarray) -> dict[str, Any]:
        kept = members & decisions.kept
        quarantined = members & table.quarantined
        rejected = members & ~decisions.kept & ~table.quarantined
        unscored = members & np.isin(decisions.reason, [REASON_CODE[r] for r in UNSCORED_REASONS])
        drawn = unscored & kept  # kept by the seeded random draw, not by rank: what the user must see first
        out = {"records_in": int(members.sum()), "tokens_in": int(table.tokens[members].sum()),
               "kept": int(kept.sum()), "kept_tokens": int(table.tokens[kept].sum()),
               "rejected": int(rejected.sum()), "rejected_tokens": int(table.tokens[rejected].sum()),
               "quarantined": int(quarantined.sum()),
               "unscored": int(unscored.sum()), "unscored_tokens": int(table.tokens[unscored].sum()),
               "unscored_kept": int(drawn.sum()), "unscored_kept_tokens": int(table.tokens[drawn].sum())}
        # The books must balance before anything is written: every record is exactly one of these.
        if out["records_in"] != out["kept"] + out["rejected"] + out["quarantined"] or \
                out["tokens_in"] != out["kept_tokens"] + out["rejected_tokens"] + int(table.tokens[quarantined].sum()):
            raise RuntimeError("selection bookkeeping error: kept + rejected + quarantined != records in")
        return out

    sel = config.selection
    per_source = {name: counts(table.source_idx == i) for i, name in enumerate(table.sources)}
    per_group = {name: counts(table.group_idx == i) for i, name in enumerate(table.groups)}
    totals = counts(np.ones(len(table.tokens), dtype=bool))
    for key in totals:
        if sum(s[key] for s in per_source.values()) != totals[key]:
            raise RuntimeError("selection bookkeeping error: per-source counts do not add up to the totals")
    budget_unit, budget_value = sel.budget_unit()
    return {"method": sel.method, "mode": rank_by.mode, "key": rank_by.key_name, "budget": budget_value,
            "budget_kind": "fraction of tokens" if budget_unit == "fraction" else "tokens",
            "budget_label": sel.budget_label(), "budget_share": sel.budget_share(int(table.tokens.sum())),
            "floor": dict(sel.floor), "cap": dict(sel.cap), "seed": sel.seed, "unscored_policy": sel.unscored,
            "totals": totals, "sources": per_source, "groups": per_group, "units": decisions.units,
            "source_groups": {s: (table.groups[g] if g >= 0 else None)
                              for s, g in zip(table.sources, _first_group(table), strict=True)}}


def _first_group(table: ScoreTable) -> list[int]:
    out = []
    for i in range(len(table.sources)):
        rows = np.flatnonzero(table.source_idx == i)
        out.append(int(table.group_idx[rows[0]]) if len(rows) else -1)
    return out


# --- writing ---------------------------------------------------------------------------------



def select_corpus(config: RunConfig, run: RunDir, progress: ProgressFactory | None = None,
                  notes: list[str] | None = None) -> dict[str, Any]:
    """Decide from the stored scores and write the named selection; returns the totals. What the
    user should know about it (:mod:`mira.selection.notes`) goes to `notes` when given (the caller
    shows them), else to the log."""
    from mira.core.progress import null_progress

    progress = progress or null_progress
    require_ingested_sources(config, run, "select")  # records appended since ingest lie outside its shards
    prepare(config, run, progress)  # a method's own corpus pass (perplexity, dataman), with progress bars
    infos = source_infos(run)
    table = load_score_table(config, run, infos)
    rank_by = ranking(config, table)
    decisions = decide(config, table, rank_by)
    summary = summarize(config, table, decisions, rank_by)
    if notes is not None:
        notes.extend(selection_notes(summary))
    else:
        for note in selection_notes(summary):
            log.warning(note)
    name = selection_name(config)
    summary = {"name": name, "fingerprint": selection_fingerprint(config, run), **summary}
    final = selection_dir(run, name)
    if final.exists() and not (final / "summary.json").exists() and not _only_selection_files(final):
        raise ConfigError(f"{final} exists but is not a selection; choose another selection.name")
    partial = final.with_name(f".{name}.partial")
    remove_own_files(partial, is_selection_file)  # a killed run's leftovers
    task = progress("write selection", len(table.shard_rows))
    # Every output file gets every source's fields (null where absent): one schema for the selection.
    columns = list(dict.fromkeys(field for info in infos for field in info.fields))
    anchors = _anchor_columns(run, table, summary["source_groups"])
    written: list[tuple[str, str, Any]] = []  # (source, shard, schema) of each shard with kept records
    try:
        for info, shard, start, end in table.shard_rows:
            kept = _write_shard(config, run, partial, info, shard, decisions, rank_by, table.score, start, end,
                                columns, anchors.get(info.name, {}))
            if kept is not None:
                written.append((info.name, shard.name, kept))
            task.advance()
    except BaseException:
        # A refused input (changed since scoring) or a crash leaves no half-built selection behind.
        remove_own_files(partial, is_selection_file)
        raise
    finally:
        task.close()
    formats = [str(f) for f in dict.fromkeys(config.selection.output_formats)]
    summary["json_columns"], schema = unify_selection(partial, written, formats)
    if written:  # the dataset card: `datasets.load_dataset(<this folder>)` with the selection's schema
        sources = list(dict.fromkeys(source for source, _, _ in written))
        atomic_write_text(partial / CARD, card_text(name, schema, sources, formats, summary["json_columns"]))
    # Validated by its catalogue schema; written into the partial folder swapped in below.
    atomic_write_json(partial / "summary.json", dump(artifact.SelectionSummary.model_validate(summary)))
    # Swap the finished selection in; a killed run leaves the previous selection intact.
    swap_in(partial, final, is_selection_file)
    totals = summary["totals"]
    return {k: totals[k] for k in ("records_in", "tokens_in", "kept", "kept_tokens", "rejected", "quarantined",
                                   "unscored")}


def _only_selection_files(folder: Path) -> bool:
    """True for a folder holding nothing but what select writes: a selection whose summary.json was
    deleted is rebuilt (its done marker no longer holds), a folder of other files is refused."""
    return folder.is_dir() and all(is_selection_file(PurePosixPath(p.relative_to(folder).as_posix()))
                                   for p in folder.rglob("*") if not p.is_dir())


def is_selection_file(path: PurePosixPath) -> bool:
    """What select writes: summary.json, README.md (the dataset card), <source>/<shard>.<format>
    (selection.output_formats), _decisions/<source>/<shard>.parquet."""
    parts = path.parts
    if len(parts) == 1:
        return parts[0] in ("summary.json", CARD) or is_atomic_temp(parts[0], r"summary\.json|README\.md")
    name = parts[-1]
    shard = r"\d{5}\.(" + "|".join(re.escape(f) for f in FORMATS) + ")"
    shard_file = re.fullmatch(shard, name) or is_atomic_temp(name, shard)
    return bool(shard_file) and (len(parts) == 2 or (len(parts) == 3 and parts[0] == DECISIONS))


def _write_shard(config: RunConfig, run: RunDir, out_root: Path, info: SourceInfo, shard: Shard,
                 decisions: Decisions, rank_by: Ranking, aggregates: np.ndarray, start: int, end: int,
                 columns: list[str], anchors: dict[str, tuple[str, str, bool]]) -> Any:
    """Write one shard's kept records and its decisions; returns the kept records' Arrow schema
    (None when it kept none: no output file)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    scores = pq.read_table(shard_scores_path(run, shard)).to_pylist()
    fixed = {"id", "locator", "source", "group", "tokens", "score", "quarantine"}  # ("score": files of score-v1)
    # (score column, "<group>/<id>", name, reliable for this source) of each anchor, for `mira_anchors`
    anchor_meta = [(a, *anchors.get(a, (a, a, False))) for a in (scores[0].keys() if scores else []) if a not in fixed]
    kept_rows: list[dict[str, Any]] = []
    marker = SCORES_DONE.read(run, source=shard.source, shard=shard.name)
    scored = marker.input_digest if marker is not None else None  # None in markers of older runs
    digest = shard_digest(scored)  # of the kind score recorded
    raw_items = iter_shard(shard, config.ingest.max_record_bytes, digest, config.storage)
    for offset, (raw, row) in enumerate(_aligned(raw_items, scores, info, shard)):
        if decisions.kept[start + offset]:
            # Every record of the selection gets the same columns (null where absent) in one order.
            record: dict[str, Any] = dict.fromkeys(columns)
            record.update(raw.data or {})
            record.update({"mira_id": row["id"], "mira_score": _finite(aggregates[start + offset]),
                           "mira_group": row["group"], "mira_tokens": row["tokens"],
                           "mira_reason": str(REASONS[decisions.reason[start + offset]]),
                           "mira_anchors": [{"anchor": qualified, "name": label, "score": _finite(row[a]),
                                             "reliable": reliable} for a, qualified, label, reliable in anchor_meta]})
            kept_rows.append(record)
    _check_unchanged(info, shard, scored, digest.hexdigest())
    kept_schema = write_shard(out_root / info.name, shard.name, kept_rows,
                              [str(f) for f in dict.fromkeys(config.selection.output_formats)]) if kept_rows else None
    rows = slice(start, end)
    rank = decisions.rank[rows]
    reasons = [f"{DecisionReason.QUARANTINED}: {s['quarantine']}" if REASONS[r] == DecisionReason.QUARANTINED
               else str(REASONS[r]) for r, s in zip(decisions.reason[rows].tolist(), scores, strict=True)]
    decision_table = pa.table({
        "id": [s["id"] for s in scores], "locator": [s["locator"] for s in scores],
        "kept": pa.array(decisions.kept[rows], pa.bool_()), "reason": pa.array(reasons, pa.string()),
        "rank": pa.array(rank, pa.int64(), mask=rank == 0),
        "key": pa.array([_finite(k) for k in rank_by.key[rows]], pa.float64()),
        "tokens": pa.array([int(s["tokens"]) for s in scores], pa.int64())})
    with atomic_path(out_root / DECISIONS / info.name / f"{shard.name}.parquet") as tmp:
        pq.write_table(decision_table, str(tmp), compression="zstd")
    return kept_schema


def _anchor_columns(run: RunDir, table: ScoreTable, source_groups: dict[str, str | None]
                    ) -> dict[str, dict[str, tuple[str, str, bool]]]:
    """Per source, each anchor id of its group: ("<group>/<id>", the anchor's name, whether the
    mask the aggregate used trusts it for that source), for the ``mira_anchors`` column."""
    from mira.artifacts.anchors import load_rubric, rubric_is_empty, rubric_path
    from mira.scoring.reliability import source_cell

    names: dict[str, dict[str, str]] = {}
    out: dict[str, dict[str, tuple[str, str, bool]]] = {}
    for source, group in source_groups.items():
        mask = table.masks.get(group) if group is not None else None
        if group is None or mask is None:  # no group, or a group discover left without anchors: no scores
            continue
        if group not in names:
            readable = rubric_path(run, group).exists() and not rubric_is_empty(run, group)
            names[group] = {a.id: a.name for a in load_rubric(run, group)} if readable else {}
        out[source] = {a: (f"{group}/{a}", names[group].get(a, a), not source_cell(mask, source, a)["masked"])
                       for a in mask["anchors"]}
    return out


def _aligned(raw_items: Iterable[RawItem], scores: list[dict[str, Any]], info: SourceInfo,
             shard: Shard) -> Iterator[tuple[RawItem, dict[str, Any]]]:
    """(raw item, score row) pairs; stops with a one-line error when they no longer line up."""
    rows = iter(scores)
    for raw in raw_items:
        row = next(rows, None)
        if row is None:
            raise _changed(info, shard, "more records than were scored")
        if raw.locator != row["locator"]:
            raise _changed(info, shard, f"{raw.locator} vs {row['locator']}")
        yield raw, row
    if next(rows, None) is not None:
        raise _changed(info, shard, "fewer records than were scored")


def _changed(info: SourceInfo, shard: Shard, detail: str) -> StageNotReady:
    files = ", ".join(Path(f).name for f in shard.files[:3]) + (" ..." if len(shard.files) > 3 else "")
    return StageNotReady(f"source {info.name} shard {shard.name} ({files}): input changed since scoring "
                         f"({detail}); rerun `mira ingest --force` and `mira score --force`, then select")


def _check_unchanged(info: SourceInfo, shard: Shard, scored: str | None, digest: str) -> None:
    """Stop if the shard's input bytes differ from those score read (same size and mtime or not)."""
    if scored is not None and scored != digest:
        raise _changed(info, shard, "content fingerprint differs")


def _finite(value: Any) -> float | None:
    # JSON has no NaN; null is what `datasets` and every JSON reader understand.
    return None if value is None or (isinstance(value, float) and not math.isfinite(value)) else float(value)
