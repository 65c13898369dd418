"""Building a selection: decide every record under the budget, write the kept records and the summary."""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePosixPath
from typing import Any

from mira.artifacts import selection as artifact
from mira.artifacts.scores import SCORES_DONE
from mira.artifacts.selection import REASONS, DecisionReason
from mira.core.config import ConfigError, RunConfig
from mira.core.config_selection import EXECUTION_ONLY
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
from mira.selection.decided import Decided, InMemory, ShardDecisions
from mira.selection.named import selection_dir, selection_name
from mira.selection.notes import selection_notes
from mira.selection.out_of_core import OutOfCore, decide_out_of_core
from mira.selection.outputs import FORMATS, unify_selection, write_shard
from mira.selection.rankings import prepare, ranking, ranking_fingerprint
from mira.selection.summary import summarize

log = logging.getLogger(__name__)

VERSION = "select-v1"
IN_MEMORY_BYTES = 55  # what select holds a record in memory (benchmarks/scale.py)
SPILL_BYTES = 140  # the spill files' peak a record out of core (runs, merged file, side files)
DECISIONS = "_decisions"  # source names cannot start with "_", so this never collides with a source




def selection_fingerprint(config: RunConfig, run: RunDir) -> str:
    """What one selection is built from; stored in its summary so `mira compare` can reuse it."""
    # Selection config + the score fingerprint only: scores never depend on selection settings.
    # A ranking that reads files besides the scores (a reference corpus, its own artifacts) adds them.
    # Reliability settings and the masks' inputs too: the aggregate is computed at join time
    # (mira.scoring.table), so a new threshold or aggregator re-selects without rescoring.
    from mira.scoring.reliability import mask_inputs

    # How select runs (in memory or out of core) is left out: both write the same bytes.
    settings = config.section_hash("selection", "reliability", skip={"selection": EXECUTION_ONLY})
    return make_fingerprint(VERSION, settings, run.require("score"), hash_files(mask_inputs(run)),
                            ranking_fingerprint(config, run))




def out_of_core(config: RunConfig, records: int) -> bool:
    """Whether select decides a corpus of `records` records out of core (``selection.out_of_core``)."""
    sel = config.selection
    return sel.out_of_core == "always" or (sel.out_of_core == "auto" and records > sel.in_memory_max_records)


def decision_plan(config: RunConfig, records: int) -> str:
    """The dry run's line on how select will decide: where its memory (or disk) goes."""
    if out_of_core(config, records):
        return (f"decides out of core ({records:,} records; selection.out_of_core: {config.selection.out_of_core}): "
                f"about {SPILL_BYTES * records / 1e9:.2g} GB of spill files in selection/.{selection_name(config)}"
                ".spill while it runs, memory flat in corpus size")
    return f"decides in memory: about {IN_MEMORY_BYTES * records / 1e9:.2g} GB in this process"


def decide_selection(config: RunConfig, run: RunDir, infos: list[SourceInfo], name: str) -> Decided:
    """Every record's decision: in memory, or out of core above ``selection.in_memory_max_records``
    records (or as ``selection.out_of_core`` says). Both decide the same; close an OutOfCore result
    to remove its spill files."""
    sel = config.selection
    records = sum(info.records for info in infos)
    if out_of_core(config, records):
        log.info("select: %d records, deciding out of core (selection.in_memory_max_records: %d)", records,
                 sel.in_memory_max_records)
        return decide_out_of_core(config, run, infos, selection_dir(run, name).with_name(f".{name}.spill"))
    table = load_score_table(config, run, infos)
    rank_by = ranking(config, table)
    return InMemory.of(table, rank_by, decide(config, table, rank_by))


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
    name = selection_name(config)
    decided = decide_selection(config, run, infos, name)
    try:
        return _write_selection(config, run, infos, name, decided, progress, notes)
    finally:
        if isinstance(decided, OutOfCore):
            decided.close()


def _write_selection(config: RunConfig, run: RunDir, infos: list[SourceInfo], name: str, decided: Decided,
                     progress: ProgressFactory, notes: list[str] | None) -> dict[str, Any]:
    summary = summarize(config, decided)
    if notes is not None:
        notes.extend(selection_notes(summary))
    else:
        for note in selection_notes(summary):
            log.warning(note)
    summary = {"name": name, "fingerprint": selection_fingerprint(config, run), **summary}
    final = selection_dir(run, name)
    if final.exists() and not (final / "summary.json").exists() and not _only_selection_files(final):
        raise ConfigError(f"{final} exists but is not a selection; choose another selection.name")
    partial = final.with_name(f".{name}.partial")
    remove_own_files(partial, is_selection_file)  # a killed run's leftovers
    task = progress("write selection", decided.shard_count)
    # Every output file gets every source's fields (null where absent): one schema for the selection.
    columns = list(dict.fromkeys(field for info in infos for field in info.fields))
    anchors = _anchor_columns(run, decided.masks, summary["source_groups"])
    written: list[tuple[str, str, Any]] = []  # (source, shard, schema) of each shard with kept records
    try:
        for info, shard, decisions in decided.shards():
            kept = _write_shard(config, run, partial, info, shard, decisions, columns, anchors.get(info.name, {}))
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
                 decisions: ShardDecisions, columns: list[str], anchors: dict[str, tuple[str, str, bool]]) -> Any:
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
        if decisions.kept[offset]:
            # Every record of the selection gets the same columns (null where absent) in one order.
            record: dict[str, Any] = dict.fromkeys(columns)
            record.update(raw.data or {})
            record.update({"mira_id": row["id"], "mira_score": _finite(decisions.score[offset]),
                           "mira_group": row["group"], "mira_tokens": row["tokens"],
                           "mira_reason": str(REASONS[decisions.reason[offset]]),
                           "mira_anchors": [{"anchor": qualified, "name": label, "score": _finite(row[a]),
                                             "reliable": reliable} for a, qualified, label, reliable in anchor_meta]})
            kept_rows.append(record)
    _check_unchanged(info, shard, scored, digest.hexdigest())
    kept_schema = write_shard(out_root / info.name, shard.name, kept_rows,
                              [str(f) for f in dict.fromkeys(config.selection.output_formats)]) if kept_rows else None
    rank = decisions.rank
    reasons = [f"{DecisionReason.QUARANTINED}: {s['quarantine']}" if REASONS[r] == DecisionReason.QUARANTINED
               else str(REASONS[r]) for r, s in zip(decisions.reason.tolist(), scores, strict=True)]
    decision_table = pa.table({
        "id": [s["id"] for s in scores], "locator": [s["locator"] for s in scores],
        "kept": pa.array(decisions.kept, pa.bool_()), "reason": pa.array(reasons, pa.string()),
        "rank": pa.array(rank, pa.int64(), mask=rank == 0),
        "key": pa.array([_finite(k) for k in decisions.key], pa.float64()),
        "tokens": pa.array([int(s["tokens"]) for s in scores], pa.int64())})
    with atomic_path(out_root / DECISIONS / info.name / f"{shard.name}.parquet") as tmp:
        pq.write_table(decision_table, str(tmp), compression="zstd")
    return kept_schema


def _anchor_columns(run: RunDir, masks: dict[str, dict[str, Any] | None], source_groups: dict[str, str | None]
                    ) -> dict[str, dict[str, tuple[str, str, bool]]]:
    """Per source, each anchor id of its group: ("<group>/<id>", the anchor's name, whether the
    mask the aggregate used trusts it for that source), for the ``mira_anchors`` column."""
    from mira.artifacts.anchors import load_rubric, rubric_is_empty, rubric_path
    from mira.scoring.reliability import source_cell

    names: dict[str, dict[str, str]] = {}
    out: dict[str, dict[str, tuple[str, str, bool]]] = {}
    for source, group in source_groups.items():
        mask = masks.get(group) if group is not None else None
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
