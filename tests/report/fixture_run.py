"""A synthetic run directory, written through the artifact catalogue (:mod:`mira.artifacts`).

Every artifact is a typed object saved with the catalogue's ``save``, so the fixture follows the
same schemas as the stages and cannot drift from them. The numbers are invented but consistent
with each other the way a real run's are: labelled records appear in the score shards under the
same id, student predictions sit near the teacher's labels, the aggregate is the one select
computes (``mira.scoring.table.aggregate_scores`` under the run's reliability config), the
selection keeps the best records per group under a 50 % token budget, and every summary count
adds up. ``build_fixture_run(root, stages=("ingest", "group"))`` writes a partial run.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from mira.artifacts import CATALOGUE
from mira.artifacts.anchors import Anchor
from mira.artifacts.inputs import Inventory, InventoryTotals, LengthTokens, SourceInventory
from mira.artifacts.rubrics import Dimension, GroupEntry, GroupsFile, Judgment, Similarity
from mira.artifacts.scores import GroupAnchors, ScoresSummary, ShardDone, SourceScoreCounts, score_fixed
from mira.artifacts.selection import (
    CurrentSelection,
    DecisionReason,
    RetentionUnit,
    SelectionCounts,
    SelectionSummary,
    decisions_schema,
)
from mira.artifacts.students import CellMetrics, Mask, MaskCell, Metrics, labels_schema
from mira.core.config import ReliabilityConfig, RunConfig, SourceConfig
from mira.core.hashing import fingerprint
from mira.core.stages import STAGES
from mira.run.bookkeeping import Usage
from mira.run.rundir import RunDir
from mira.scoring.table import aggregate_scores

INJECTION = "<script>alert(1)</script>"
INJECTION_WHY = '<img src=x onerror="alert(2)">'

# name, format, group, records, quality mean, log-token mean
SOURCES = [
    ("stdlib_code", "code", "g0", 420, 7.2, 6.4),
    ("sitepkg_code", "code", "g0", 900, 5.6, 6.0),
    ("c_headers", "code", "g0", 160, 5.0, 5.6),
    ("man_pages", "text", "g1", 380, 6.4, 7.0),
    ("doc_readmes", "text", "g1", 300, 5.2, 6.2),
    ("fortunes", "text", "g1", 260, 2.4, 3.8),
    ("bfcl_agent", "agent", "g2", 240, 5.8, 6.6),
    ("math_qa", "qa", "g2", 320, 6.1, 5.9),
]
GROUPS = {
    "g0": ("code: c_headers, sitepkg_code, stdlib_code", 0.86),
    "g1": ("documents: doc_readmes, fortunes, man_pages", 0.71),
    "g2": ("dialogue: bfcl_agent, math_qa", 0.64),
}
ANCHORS = {
    "g0": [("Docstring quality", "whole"), ("Naming clarity", "whole"), ("Error handling", "whole"),
           ("Modularity", "whole"), ("Idiomatic style", "whole")],
    "g1": [("Clarity", "whole"), ("Completeness", "whole"), ("Structure", "whole"),
           ("Factual precision", "whole"), ("Usefulness for a learner", "whole")],
    "g2": [("Argument validity", "calls"), ("Tool choice", "calls"), ("Reasoning coherence", "trace"),
           ("Answer correctness", "answer"), ("Trace supports answer", "both"), ("Recovery from errors", "calls")],
}
LABELS_PER_SOURCE = 36
SELECTION = "mira-group-50pct"
REASONS = ["empty record", "invalid json", "record too large", "undecodable bytes"]


def _anchor_ids(group: str) -> list[str]:
    return [f"a{i:02d}" for i in range(len(ANCHORS[group]))]


def _text(fmt: str, source: str, i: int, quality: float, tokens: int) -> str:
    body = {
        "code": f"def handler_{i}(request, retries=3):\n    \"\"\"Handle one request ({source}).\"\"\"\n"
                f"    for attempt in range(retries):\n        if request.ok:\n            return request.body\n",
        "text": f"{source.upper()}({i})\n\nNAME\n    tool{i} - does one thing well\n\nDESCRIPTION\n"
                f"    This page describes option --level={round(quality)} and its effect.\n",
        "agent": f"user: book a table for {i % 7 + 2}\nassistant -> call reserve({{\"people\": {i % 7 + 2}}})\n"
                 f"tool: ok, id {i}\nassistant: Done, your reservation id is {i}.\n",
        "qa": f"Question: what is {i} * {i + 1}?\nTrace: multiply step by step ... {i} * {i + 1} = {i * (i + 1)}\n"
              f"Answer: {i * (i + 1)}\n",
    }[fmt]
    filler = " ".join(f"word{j}" for j in range(min(tokens, 700)))
    return body + "\n" + filler


def build_fixture_run(root: Path, stages: Iterable[str] = STAGES[:-1], seed: int = 0,
                      with_validation: bool = True) -> RunDir:
    """Write a run directory holding the artifacts of `stages` (default: all but report)."""
    stages = set(stages)
    rng = np.random.default_rng(seed)
    run = RunDir(Path(root))
    config = RunConfig(name="fixture-run", run_dir=str(root),
                       sources=[SourceConfig(name=s[0], path=f"/data/{s[0]}.jsonl") for s in SOURCES])
    run.save_config(config)

    # Every record of every source, generated once so that the stages agree with each other.
    corpus: dict[str, dict[str, Any]] = {}
    for name, fmt, group, n, quality, log_tokens in SOURCES:
        tokens = np.maximum(8, rng.lognormal(log_tokens, 0.9, n)).astype(int)
        latent = np.clip(rng.normal(quality, 1.6, n) + 0.15 * (np.log(tokens) - log_tokens), 0, 10)
        quarantined = rng.random(n) < 0.04
        reasons = [REASONS[int(rng.integers(0, 2 if j % 3 else 4))] if q else None for j, q in enumerate(quarantined)]
        anchors = _anchor_ids(group)
        teacher = np.clip(latent[:, None] + rng.normal(0, 1.0, (n, len(anchors))), 0, 10)
        student = np.clip(teacher + rng.normal(0, 0.9, teacher.shape), 0, 10)
        ids = [f"{name}/part-{j // 500:03d}.jsonl/{j}" for j in range(n)]
        corpus[name] = dict(fmt=fmt, group=group, n=n, tokens=tokens, latent=latent, quarantined=quarantined,
                            reasons=reasons, teacher=teacher, student=student, ids=ids, anchors=anchors)

    timings = {"ingest": 4.2, "group": 31.5, "discover": 812.0, "annotate": 2954.3, "distill": 96.1,
               "score": 143.7, "select": 6.4}
    counts: dict[str, dict[str, Any]] = {}
    if "ingest" in stages:
        counts["ingest"] = _write_inventory(run, corpus)
    if "group" in stages:
        counts["group"] = _write_groups(run, rng)
    if "discover" in stages:
        counts["discover"] = _write_rubrics(run)
    if "annotate" in stages:
        counts["annotate"] = _write_labels(run, corpus)
    masks: dict[str, Mask] = {}
    if "distill" in stages:
        counts["distill"], masks = _write_students(run, corpus, with_validation)
    if "score" in stages:
        counts["score"] = _write_scores(run, corpus, masks, config.reliability)
    if "select" in stages:
        counts["select"] = _write_selection(run, corpus)
    if "discover" in stages or "annotate" in stages:
        _write_usage(run, stages)
    for stage in STAGES:
        if stage in stages and stage in counts:
            run.mark_done(stage, fingerprint("fixture", stage), counts[stage], time.time() - timings[stage])
    return run


def _write_inventory(run: RunDir, corpus: dict[str, dict[str, Any]]) -> dict[str, Any]:
    sources = {}
    for name, c in corpus.items():
        ok = ~c["quarantined"]
        toks = c["tokens"][ok]
        buckets = np.maximum(6, np.ceil(np.log2(np.maximum(toks, 1)))).astype(int)
        hist = {f"<={2 ** b}": int((buckets == b).sum()) for b in sorted(set(buckets.tolist()))}
        reasons: dict[str, int] = {}
        for r in c["reasons"]:
            if r:
                reasons[r] = reasons.get(r, 0) + 1
        sources[name] = SourceInventory(
            path=f"/data/{name}.jsonl", reader="jsonl", format=c["fmt"], files=1 + c["n"] // 500,
            records=c["n"], ok=int(ok.sum()), quarantined=int(c["quarantined"].sum()),
            quarantine_reasons=dict(sorted(reasons.items(), key=lambda kv: -kv[1])),
            tokens=int(toks.sum()), bytes=int(toks.sum() * 4),
            length_tokens=LengthTokens(p50=int(2 ** np.ceil(np.log2(np.median(toks)))),
                                       p90=int(2 ** np.ceil(np.log2(np.quantile(toks, 0.9)))),
                                       max=int(toks.max()), histogram=hist))
    totals = InventoryTotals(sources=len(corpus), **{k: sum(getattr(s, k) for s in sources.values())
                                                     for k in ("records", "ok", "quarantined", "tokens")})
    CATALOGUE["inventory"].save(run, Inventory(sources=sources, totals=totals))
    return totals.model_dump()


def _write_groups(run: RunDir, rng: np.random.Generator) -> dict[str, Any]:
    names = [s[0] for s in SOURCES]
    group_of = {s[0]: s[2] for s in SOURCES}
    matrix = np.empty((len(names), len(names)))
    for i, a in enumerate(names):
        for j, b in enumerate(names):
            base = GROUPS[group_of[a]][1] if group_of[a] == group_of[b] else 0.32
            matrix[i, j] = 1.0 if i == j else base + rng.normal(0, 0.04)
    matrix = np.round((matrix + matrix.T) / 2, 3)
    groups = GroupsFile(
        k=3, chosen_by="silhouette", k_scores={"2": 0.41, "3": 0.57, "4": 0.49, "5": 0.44},
        groups=[GroupEntry(id=g, label=label, sources=sorted(s for s in names if group_of[s] == g),
                           within_similarity=sim) for g, (label, sim) in GROUPS.items()],
        source_to_group=group_of, similarity=Similarity(sources=names, matrix=matrix.tolist()),
        embed_model="all-MiniLM-L6-v2", sample_per_source=32)
    CATALOGUE["groups"].save(run, groups)
    return {"k": 3, "sources": len(names)}


def _write_rubrics(run: RunDir) -> dict[str, Any]:
    total = 0
    for group, anchors in ANCHORS.items():
        group_sources = [s[0] for s in SOURCES if s[2] == group]
        cards = [Anchor(id=f"a{i:02d}", name=name, part=part,
                        definition=f"How well the record shows {name.lower()}; "
                                   "a property any record can have more or less of.",
                        low=f"No {name.lower()} at all, or actively misleading.",
                        mid=f"Some {name.lower()}, with gaps a reader must fill.",
                        high=f"Exemplary {name.lower()}; a reader learns from it.",
                        exemplar=f"({name}: the record is a good example of {name.lower()})",
                        support=9 - i, records=6 - i // 2,
                        sources={s: max(1, 5 - i - k) for k, s in enumerate(group_sources)})
                 for i, (name, part) in enumerate(anchors)]
        total += len(cards)
        CATALOGUE["rubric"].save(run, cards, group=group)
        judgments = [Judgment(record_id=f"{group_sources[0]}/part-000.jsonl/{j}", source=group_sources[0],
                              dimensions=[Dimension(name=anchors[j % len(anchors)][0], score=6, reason="clear")])
                     for j in range(6)]
        CATALOGUE["judgments"].save(run, judgments, group=group)
    return {"anchors": total, "groups": len(ANCHORS)}


def _labelled(corpus_entry: dict[str, Any]) -> list[int]:
    ok = np.flatnonzero(~corpus_entry["quarantined"])
    return ok[:LABELS_PER_SOURCE].tolist()


def _write_labels(run: RunDir, corpus: dict[str, dict[str, Any]]) -> dict[str, Any]:
    rows_total = 0
    for group in GROUPS:
        anchors = _anchor_ids(group)
        rows: list[dict[str, Any]] = []
        for name, c in corpus.items():
            if c["group"] != group:
                continue
            for j in _labelled(c):
                text = _text(c["fmt"], name, j, c["latent"][j], int(c["tokens"][j]))
                failed = j % 29 == 5
                if name == "doc_readmes" and j == _labelled(c)[0]:
                    # The student gets this one badly wrong, so it leads the read-tests.
                    c["student"][j] = 10 - c["teacher"][j]
                    text = f"README\n\n{INJECTION}\nThis readme tries to inject markup into the report."
                row = {"record_id": c["ids"][j], "source": name, "text": text, "format": c["fmt"],
                       "tokens": int(c["tokens"][j]), "ok": not failed,
                       "error": "answer cut off by max_tokens" if failed else None}
                for k, a in enumerate(anchors):
                    value = float(c["teacher"][j, k])
                    row[a] = None if failed else round(value, 3)
                    row[f"{a}__sampled"] = None if failed else int(round(value))
                    row[f"{a}__target_kind"] = None if failed else "expected"
                    why = f"{ANCHORS[group][k][0]}: {'strong' if value > 6 else 'weak'} in this record"
                    row[f"{a}__why"] = INJECTION_WHY if INJECTION in text and k == 0 else why
                rows.append(row)
        CATALOGUE["labels"].save(run, pa.Table.from_pylist(rows, schema=labels_schema(anchors)), group=group)
        rows_total += len(rows)
    return {"labels": rows_total}


def _write_students(run: RunDir, corpus: dict[str, dict[str, Any]],
                    with_validation: bool) -> tuple[dict[str, Any], dict[str, Mask]]:
    from scipy.stats import spearmanr

    masks: dict[str, Mask] = {}
    for group in GROUPS:
        anchors = _anchor_ids(group)
        cells: dict[str, dict[str, CellMetrics]] = {}
        mask_cells: dict[str, dict[str, MaskCell]] = {}
        val_rows: list[dict[str, Any]] = []
        for name, c in corpus.items():
            if c["group"] != group:
                continue
            val = _labelled(c)[::4]
            cells[name], mask_cells[name] = {}, {}
            for k, a in enumerate(anchors):
                t, s = c["teacher"][val, k], c["student"][val, k]
                mae = float(np.abs(t - s).mean())
                rho = float(spearmanr(t, s).statistic)
                n = len(val) if name != "c_headers" else 2
                status = "unreliable"
                if name == "c_headers":
                    reason, status = f"undecidable for lack of labels (n={n}, needs >= 4)", "undecidable"
                elif name == "fortunes" and k in (1, 3):
                    rho, reason = 0.08 + 0.03 * k, f"spearman {0.08 + 0.03 * k:.2f} < 0.2"
                elif name == "bfcl_agent" and k == 2:
                    mae, reason = 3.1, "mae 3.10 > 2.5"
                else:
                    reason = None
                cells[name][a] = CellMetrics(mae=round(mae, 3), spearman=round(rho, 3), n=n)
                mask_cells[name][a] = MaskCell(masked=reason is not None, reason=reason,
                                               weight=0.0 if reason else 1.0, basis="source", n=n,
                                               status=status if reason else "reliable")
            for j in val:
                row = {"record_id": c["ids"][j], "source": name}
                for k, a in enumerate(anchors):
                    row[f"{a}__teacher"] = round(float(c["teacher"][j, k]), 3)
                    row[f"{a}__student"] = round(float(c["student"][j, k]), 3)
                val_rows.append(row)
        overall = {a: CellMetrics(mae=round(float(np.mean([cells[s][a].mae for s in cells])), 3),
                                  spearman=round(float(np.mean([cells[s][a].spearman for s in cells])), 3),
                                  n=int(sum(cells[s][a].n for s in cells))) for a in anchors}
        metrics = Metrics(student="static", regressor="lightgbm" if group != "g1" else "ridge", anchors=anchors,
                          cells=cells, overall=overall,
                          mean_spearman=round(float(np.mean([o.spearman for o in overall.values()])), 3),
                          candidates={"ridge": {"mean_spearman": 0.71, "mean_mae": 1.12},
                                      "lightgbm": {"mean_spearman": 0.78, "mean_mae": 0.98}},
                          teacher_consistency=CellMetrics(mae=0.71, spearman=0.83, n=8),
                          model_choice="5-fold cross-validation on the 21 training rows")
        # The group cell: within-source statistics combined (mira.scoring.reliability.combine_within_sources).
        mask_cells["*"] = {a: MaskCell(masked=False, weight=1.0, basis="*", status="reliable", n=overall[a].n,
                                       spearman=overall[a].spearman, mae=overall[a].mae) for a in anchors}
        # No `thresholds`: a mask used as is under any reliability config (mira.scoring.reliability.current_mask).
        aggregate = ({"spearman": 0.41, "n_eff": 18, "rows": 21, "sources": 3, "length_spearman": 0.12, "lower": 0.07,
                      "confirmation": {"spearman": 0.33, "rows": 7}, "status": "reliable", "reason": None}
                     if group == "g1" else None)
        masks[group] = Mask(anchors=anchors, cells=mask_cells, needed_rows=4, aggregate=aggregate)
        CATALOGUE["metrics"].save(run, metrics, group=group)
        CATALOGUE["mask"].save(run, masks[group], group=group)
        if with_validation:
            CATALOGUE["validation"].save(run, pa.Table.from_pylist(val_rows), group=group)
    return {"students": len(GROUPS)}, masks


def _write_scores(run: RunDir, corpus: dict[str, dict[str, Any]], masks: dict[str, Mask],
                  reliability: ReliabilityConfig) -> dict[str, Any]:
    scored = 0
    summary = ScoresSummary(fingerprint=fingerprint("fixture", "score"))
    for name, c in corpus.items():
        anchors = c["anchors"]
        shards, c["score"] = [], np.full(c["n"], math.nan)
        for start in range(0, c["n"], 500):
            idx = range(start, min(start + 500, c["n"]))
            rows = []
            for j in idx:
                row = {"id": c["ids"][j], "locator": c["ids"][j], "source": name, "group": c["group"],
                       "tokens": 0 if c["quarantined"][j] else int(c["tokens"][j]),
                       "quarantine": c["reasons"][j]}
                for k, a in enumerate(anchors):
                    row[a] = math.nan if c["quarantined"][j] else round(float(c["student"][j, k]), 3)
                rows.append(row)
            schema = pa.schema(list(score_fixed()) + [pa.field(a, pa.float64()) for a in anchors])
            table = pa.Table.from_pylist(rows, schema=schema)
            shard = f"{start // 500:05d}"
            CATALOGUE["scores"].save(run, table, source=name, shard=shard)
            # The aggregate as select computes it (mask + aggregator at join time).
            mask = masks.get(c["group"])
            if mask is not None:
                c["score"][start:start + len(rows)] = aggregate_scores(table, mask.model_dump(), reliability)
            ok = ~np.isnan(c["score"][start:start + len(rows)])
            done = ShardDone(fingerprint=summary.fingerprint, source=name, shard=shard, group=c["group"],
                             anchors=anchors, records=len(rows), scored=int(ok.sum()),
                             quarantined=int(c["quarantined"][start:start + len(rows)].sum()),
                             tokens=int(table.column("tokens").to_numpy().sum()))
            CATALOGUE["scores_done"].save(run, done, source=name, shard=shard)
            shards.append(done)
        summary.sources[name] = SourceScoreCounts(group=c["group"], shards=len(shards),
                                                  **{k: sum(getattr(d, k) for d in shards)
                                                     for k in ("records", "scored", "quarantined", "tokens")})
        summary.groups.setdefault(c["group"], GroupAnchors(anchors=anchors))
        scored += int((~np.isnan(c["score"])).sum())
    CATALOGUE["scores_summary"].save(run, summary)
    return {"scored": scored}


def _write_selection(run: RunDir, corpus: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Same books as mira.stages.select: unscored records are counted inside `rejected`."""

    def counts(entries: list[tuple[str, int]], kept: set[tuple[str, int]]) -> SelectionCounts:
        out = dict.fromkeys(("records_in", "tokens_in", "kept", "kept_tokens", "rejected", "rejected_tokens",
                             "quarantined", "unscored", "unscored_tokens"), 0)
        for n, j in entries:
            c = corpus[n]
            # Quarantined records count 0 tokens in scores/, as the score stage writes them.
            tokens = 0 if c["quarantined"][j] else int(c["tokens"][j])
            out["records_in"] += 1
            out["tokens_in"] += tokens
            if c["quarantined"][j]:
                out["quarantined"] += 1
            elif (n, j) in kept:
                out["kept"] += 1
                out["kept_tokens"] += tokens
            else:
                out["rejected"] += 1
                out["rejected_tokens"] += tokens
                if math.isnan(c["score"][j]):
                    out["unscored"] += 1
                    out["unscored_tokens"] += tokens
        return SelectionCounts(**out)

    kept: set[tuple[str, int]] = set()
    rank: dict[tuple[str, int], int] = {}
    groups: dict[str, SelectionCounts] = {}
    units: dict[str, RetentionUnit] = {}
    for group in GROUPS:
        members = [n for n, c in corpus.items() if c["group"] == group]
        pool = sorted(((corpus[n]["score"][j], n, j) for n in members for j in range(corpus[n]["n"])
                       if not math.isnan(corpus[n]["score"][j])), key=lambda t: -t[0])
        budget = 0.5 * sum(int(corpus[n]["tokens"][~corpus[n]["quarantined"]].sum()) for n in members)
        used, cutoff = 0, None
        for position, (score, n, j) in enumerate(pool, start=1):
            rank[(n, j)] = position
            if used >= budget:
                continue
            kept.add((n, j))
            used += int(corpus[n]["tokens"][j])
            cutoff = float(score)
        entries = [(n, j) for n in members for j in range(corpus[n]["n"])]
        groups[group] = counts(entries, kept)
        units[group] = RetentionUnit(tokens_in=groups[group].tokens_in, budget_tokens=budget, kept_tokens=used,
                                     cutoff=cutoff, eligible_records=len(pool), records_in=len(entries))
    sources = {n: counts([(n, j) for j in range(c["n"])], kept) for n, c in corpus.items()}
    for n, c in corpus.items():
        k_idx = [j for j in range(c["n"]) if (n, j) in kept]
        # Kept records are the selection's output (owned by mira.stages.select, opaque to the catalogue).
        out = CATALOGUE["selected"].path(run, name=SELECTION, source=n, shard="00000", ext="jsonl")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("".join(json.dumps({"id": c["ids"][j], "mira_id": c["ids"][j],
                                           "mira_score": float(c["score"][j]), "mira_group": c["group"],
                                           "mira_tokens": int(c["tokens"][j])}) + "\n" for j in k_idx))
        reasons = [f"{DecisionReason.QUARANTINED}: {c['reasons'][j]}" if c["quarantined"][j] else
                   DecisionReason.UNSCORED if math.isnan(c["score"][j]) else
                   DecisionReason.KEPT if (n, j) in kept else DecisionReason.BELOW_CUTOFF for j in range(c["n"])]
        decisions = pa.table({"id": c["ids"], "locator": c["ids"], "kept": [(n, j) in kept for j in range(c["n"])],
                              "reason": [str(r) for r in reasons],
                              "rank": pa.array([rank.get((n, j)) for j in range(c["n"])], pa.int64()),
                              "key": pa.array([None if math.isnan(v) else float(v) for v in c["score"]], pa.float64()),
                              "tokens": c["tokens"].tolist()}, schema=decisions_schema())
        CATALOGUE["decisions"].save(run, decisions, name=SELECTION, source=n, shard="00000")
    summary = SelectionSummary(
        name=SELECTION, fingerprint=fingerprint("fixture", "selection"), method="mira", mode="group", key="score",
        budget=0.5, budget_kind="fraction of tokens", budget_label="50%", budget_share=0.5, seed=0,
        totals=counts([(n, j) for n, c in corpus.items() for j in range(c["n"])], kept), sources=sources,
        groups=groups, units=units, source_groups={n: c["group"] for n, c in corpus.items()})
    CATALOGUE["selection_summary"].save(run, summary, name=SELECTION)
    CATALOGUE["current_selection"].save(run, CurrentSelection(name=SELECTION))
    totals = summary.totals
    return {k: getattr(totals, k) for k in ("records_in", "tokens_in", "kept", "kept_tokens", "rejected",
                                            "quarantined", "unscored")}


def _write_usage(run: RunDir, stages: set[str]) -> None:
    for stage, requests, hits in (("discover", 36, 4), ("annotate", 312, 40)):
        if stage not in stages:
            continue
        last = {"requests": requests, "cache_hits": hits, "sent": requests - hits + 3, "retries": 3,
                "parse_retries": 2, "failures": 1, "budget_skipped": 0, "prompt_tokens": requests * 610,
                "completion_tokens": requests * 180, "latency_s": requests * 9.1, "degraded": [],
                "mean_latency_s": 9.1}
        CATALOGUE["usage"].save(run, Usage(
            stage=stage, model="qwen2.5-coder-1.5b", updated_at="2026-11-27T10:00:00Z", budget_exhausted=False,
            sessions=1, last=last,
            total={k: v for k, v in last.items() if isinstance(v, (int, float)) and k != "mean_latency_s"}),
            stage=stage)
