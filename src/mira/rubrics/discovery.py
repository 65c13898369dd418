"""Phase-1 rubric discovery: free-form teacher judgments of records, clustered into anchors, checked as cards."""

from __future__ import annotations

import logging
from collections import Counter
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, create_model

from mira.artifacts.anchors import PARTS, Anchor, file_sha256, rubric_path
from mira.artifacts.rubrics import JUDGMENTS
from mira.core.config import DiscoveryConfig
from mira.core.errors import StageIncomplete
from mira.corpus.records import Record
from mira.io.files import atomic_write_text, read_json
from mira.rubrics.cards import card_problem
from mira.rubrics.clusters import Cluster, Point, candidate_clusters, card_points, rank_key
from mira.run.context import StageContext
from mira.run.rundir import RunDir
from mira.teacher import Score, TeacherRequest, load_prompt, wrap_record
from mira.teacher.outcome import FailureTracker

if TYPE_CHECKING:
    from mira.teacher import Teacher

log = logging.getLogger(__name__)
VERSION = "discover-v3"  # v2: a card "names one record's content" only with words of that record's text;
# v3: a card the card check rejects is rewritten once, with the reason, before its slot moves on; a small
# group whose judgments share no quality is judged again on the full records_per_group (stages/discover.py)
# The rewrite request: the card prompt again, told what was wrong with the card it gave. A small
# teacher writes a usable card for a real quality most of the time and a broken one now and then
# (LOW and HIGH swapped, three near-identical guides); without a rewrite the quality is lost, and
# on the demo a group lost its last candidate that way (2026-12-08: prose, 0 anchors).
REWRITE = ("\n\nAn entry you wrote for these notes could not be used: {reason}.\n"
           "Write the entry again for the same notes. LOW must describe a poor record and HIGH an excellent "
           "one, the three guides must say clearly different things, and the definition must name a quality "
           "any record of this kind can have, not its length, format or topic, nor what one record is about.")
JUDGE_PROMPT, CARD_PROMPT = "judge", "anchor_card"
# KMeans is asked for more clusters than the quota: one-off and copied dimension names end up in
# small clusters that the support filter removes, instead of diluting the real ones.
CARD_MAX_TOKENS = 320
SIDECAR = "_generated.json"

KINDS = {"text": "a text document", "code": "a source code file", "qa": "a question with its answer",
         "chat": "a chat conversation", "agent": "an agent trajectory with tool calls and tool results"}
KINDS_PLURAL = {"text": "text documents", "code": "source code files", "qa": "questions with answers",
                "chat": "chat conversations", "agent": "agent trajectories with tool calls"}
PART_WORDS = {"question": "the question", "trace": "the reasoning trace", "answer": "the answer",
              "both": "the reasoning and the answer together", "calls": "the tool calls and their arguments",
              "results": "the tool results", "whole": "the record as a whole"}




# --- what the teacher answers -----------------------------------------------------------------------

class AnchorCard(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Length caps become grammar limits on servers with json_schema support: a small model that
    # rambles is cut short inside the string instead of running into max_tokens.
    name: str = Field(min_length=2, max_length=48)
    definition: str = Field(min_length=5, max_length=300)
    is_quality: bool
    low: str = Field(min_length=1, max_length=200)
    mid: str = Field(min_length=1, max_length=200)
    high: str = Field(min_length=1, max_length=200)


@lru_cache(maxsize=32)
def judgment_model(parts: tuple[str, ...], max_dimensions: int) -> type[BaseModel]:
    """The judgment schema for records with these parts (no `part` field when only "whole").

    The reason comes before the score so the score is conditioned on it; the part field is left
    out for plain documents because every output token costs time on a small CPU teacher.
    """
    fields: dict[str, Any] = {"name": (str, Field(min_length=2, max_length=48))}
    if parts != ("whole",):
        fields["part"] = (Literal[parts], ...)
    fields["reason"] = (str, Field(min_length=3, max_length=200))  # one sentence; caps a rambling model
    fields["score"] = (Score, ...)
    dimension = create_model("Dimension", __config__=ConfigDict(extra="forbid"), **fields)
    return create_model("Judgment", __config__=ConfigDict(extra="forbid"),
                        dimensions=(list[dimension], Field(min_length=1, max_length=max_dimensions)))


def record_parts(record: Record) -> tuple[str, ...]:
    if record.format == "qa":
        return ("question", "trace", "answer", "both") if record.parts.get("trace") else ("question", "answer", "both")
    if record.format == "agent":
        return ("calls", "results", "answer", "whole")
    if record.format == "chat":
        return ("answer", "whole")
    return ("whole",)


def parts_rule(parts: tuple[str, ...]) -> str:
    if parts == ("whole",):
        return ""
    options = ", ".join(f'"{p}" ({PART_WORDS[p]})' for p in parts)
    return f"- part: which part of the record the dimension concerns: {options}.\n"


def judge_request(record: Record, text: str, dcfg: DiscoveryConfig) -> TeacherRequest:
    prompt = load_prompt(JUDGE_PROMPT)
    parts = record_parts(record)
    kind = KINDS.get(record.format, "a record")
    if record.format == "qa" and record.parts.get("trace"):
        kind = "a question with a reasoning trace and an answer"
    messages = prompt.render(kind=kind, max_dimensions=dcfg.max_dimensions_per_judgment,
                             parts_rule=parts_rule(parts), record=wrap_record(text))
    return TeacherRequest(messages=messages, schema=judgment_model(parts, dcfg.max_dimensions_per_judgment),
                          prompt_version=prompt.id, max_tokens=40 + 90 * dcfg.max_dimensions_per_judgment,
                          tag=record.key)


def card_request(cluster: Cluster, points: list[Point], vectors: np.ndarray,
                 rejected: str | None = None) -> TeacherRequest:
    """The card request of `cluster`; with `rejected` (why the card check refused its first card),
    the rewrite request: the same prompt told what was wrong."""
    prompt = load_prompt(CARD_PROMPT)
    formats = Counter(points[i].format for i in cluster.members)
    kind = KINDS_PLURAL.get(formats.most_common(1)[0][0], "records")
    part = "" if cluster.part == "whole" else f" of {PART_WORDS.get(cluster.part, cluster.part)}"
    notes = "\n".join(f"- {p.text} ({p.score})" for p in card_points(cluster, points, vectors))
    messages = prompt.render(kind=kind, part=part, points=wrap_record(notes))
    tag = f"card {cluster.part} {points[cluster.exemplar].name}"
    if rejected is not None:
        messages[-1] = {**messages[-1], "content": messages[-1]["content"] + REWRITE.format(reason=rejected)}
        tag += " (rewrite)"
    return TeacherRequest(messages=messages, schema=AnchorCard, prompt_version=prompt.id,
                          max_tokens=CARD_MAX_TOKENS, tag=tag)


def _norm_name(name: str) -> str:
    return " ".join(name.lower().split())


def to_anchor(anchor_id: str, card: AnchorCard, cluster: Cluster, points: list[Point]) -> Anchor:
    return Anchor(id=anchor_id, name=" ".join(card.name.split()), definition=card.definition.strip(),
                  part=cluster.part, low=card.low.strip(), mid=card.mid.strip(), high=card.high.strip(),
                  exemplar=points[cluster.exemplar].text, support=cluster.support, records=cluster.records,
                  sources=cluster.sources)


def rejected_entry(cluster: Cluster, points: list[Point], vectors: np.ndarray, reason: str,
                   card: AnchorCard | None = None) -> dict[str, Any]:
    return {"part": cluster.part, "reason": reason, "name": card.name if card else points[cluster.exemplar].name,
            "support": cluster.support, "records": cluster.records, "sources": cluster.sources,
            "exemplar": points[cluster.exemplar].text,
            "points": [p.text for p in card_points(cluster, points, vectors)],
            "card": card.model_dump(mode="json") if card else None}




# --- the stage --------------------------------------------------------------------------------------

def read_sidecar(run: RunDir) -> dict[str, str]:
    path = run.path("rubrics", SIDECAR)
    try:
        data = read_json(path) if path.exists() else {}
    except (OSError, ValueError):
        data = {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def guard_edits(ctx: StageContext, group_ids: list[str], generated: dict[str, str]) -> list[str]:
    """Group ids whose rubric the user edited and that must be kept (a note says so)."""
    kept = []
    for gid in group_ids:
        path = rubric_path(ctx.run, gid)
        current = file_sha256(path)
        if current is None or current == generated.get(gid):
            continue
        if ctx.force:
            backup = path.with_name(path.name + ".bak")
            atomic_write_text(backup, path.read_text(encoding="utf-8"))
            ctx.notes.append(f"discover: {path.name} was edited by hand; --force regenerates it "
                             f"(your version is saved as {backup.name})")
        else:
            kept.append(gid)
            ctx.notes.append(f"discover: kept your edited rubrics/{path.name} (it differs from what discover "
                             "wrote); rerun with --force to regenerate it")
    return kept


def remove_stale(ctx: StageContext, group_ids: list[str], generated: dict[str, str]) -> None:
    """Drop generated rubrics of groups that no longer exist; keep (and mention) edited ones."""
    folder = ctx.run.path("rubrics")
    if not folder.exists():
        return
    for path in sorted(folder.glob("*.jsonl")):
        gid = path.name.removesuffix(".rejected.jsonl").removesuffix(".jsonl")
        if gid in group_ids:
            continue
        if path.name.endswith(".rejected.jsonl") or file_sha256(path) == generated.get(gid):
            path.unlink()
            ctx.run.path("judgments", f"{gid}.jsonl").unlink(missing_ok=True)
        else:
            ctx.notes.append(f"discover: rubrics/{path.name} belongs to no current group; left in place")


def _points(record: Record, value: Any) -> list[Point]:
    out, seen = [], set()
    for dim in value.dimensions:
        name, reason = " ".join(dim.name.split()), " ".join(dim.reason.split())
        part = getattr(dim, "part", "whole")
        # A record that names the same dimension twice must not count as two supporters.
        if name and reason and (_norm_name(name), part) not in seen:
            seen.add((_norm_name(name), part))
            # Keyed by source and id: two sources may number their records alike.
            out.append(Point(record.key, record.source, record.format, name, part, int(dim.score), reason))
    return out


def _budget_stop(what: str) -> StageIncomplete:
    return StageIncomplete(f"teacher budget reached during {what} (teacher.max_requests / teacher.max_tokens); "
                           "answers so far are cached: rerun `mira discover` to resume")




def discover(ctx: StageContext, teacher: Teacher, samples: dict[str, list[tuple[Record, str]]],
              counts: Counter[str], tracker: FailureTracker, anchor_quota: dict[str, int] | None = None,
              ) -> dict[str, tuple[list[Anchor], list[dict[str, Any]], list[dict[str, Any]]]]:
    """Judgments of the sampled records, then anchor cards for the best clusters of their points:
    per group (anchors, judgments, rejected clusters). `anchor_quota`: anchors per group (default
    ``discovery.anchors_per_group``; :mod:`mira.rubrics.budget`)."""
    from mira.text.embed import embed_texts

    dcfg = ctx.config.discovery
    order = [(gid, record, text) for gid, items in samples.items() for record, text in items]
    results = teacher.run([judge_request(record, text, dcfg) for _, record, text in order])
    if teacher.budget_exhausted:
        raise _budget_stop("judgments")

    judgments: dict[str, list[dict[str, Any]]] = {gid: [] for gid in samples}
    points: dict[str, list[Point]] = {gid: [] for gid in samples}
    for (gid, record, _), result in zip(order, results, strict=True):
        found = _points(record, result.value) if result.ok else []
        expected = result.expected_scores or []
        judgments[gid].append({
            "record_id": record.id, "source": record.source, "format": record.format, "ok": result.ok,
            "error": result.error, "cached": result.cached,
            "dimensions": [{"name": p.name, "part": p.part, "score": p.score, "reason": p.reason,
                            "expected": expected[i] if i < len(expected) else None} for i, p in enumerate(found)],
        })
        points[gid].extend(found)
        tracker.add(gid, result)
        counts["judgments"] += 1
        counts["judgments_failed"] += 0 if result.ok else 1
        counts["teacher_cached"] += int(result.cached)

    # Stop before paying for anchor cards that a rerun (with more judgment points) would not ask.
    try:
        tracker.check(teacher, [gid for gid in samples if not points[gid]])
    except StageIncomplete:
        for gid, rows in judgments.items():
            JUDGMENTS.save(ctx.run, rows, group=gid)
        raise
    texts = [p.text for gid in samples for p in points[gid]]
    counts["points"] = len(texts)
    task = ctx.progress("discover: embed judgment points", len(texts))
    all_vectors = embed_texts(texts, ctx.config.embed, on_batch=task.advance)
    task.close()
    vectors, start = {}, 0
    for gid in samples:
        vectors[gid] = all_vectors[start:start + len(points[gid])]
        start += len(points[gid])

    # Candidates per (group, part); cards are asked in rounds, each round only for the anchors
    # still missing, so a rejected topic cluster is replaced by the next-best candidate.
    rejected: dict[str, list[dict[str, Any]]] = {gid: [] for gid in samples}
    notes = {gid: [(p.record_id, p.text) for p in points[gid]] for gid in samples}
    judged = {gid: {record.key: text for record, text in items} for gid, items in samples.items()}
    state: dict[tuple[str, str], dict[str, Any]] = {}
    for gid in samples:
        candidates, quota, dropped = candidate_clusters(points[gid], vectors[gid], dcfg,
                                                        (anchor_quota or {}).get(gid))
        rejected[gid] += [rejected_entry(c, points[gid], vectors[gid], why) for c, why in dropped]
        for part, clusters in candidates.items():
            state[(gid, part)] = {"todo": clusters, "quota": quota.get(part, 0), "accepted": [], "rewrite": []}
    while True:
        # A rejected card's rewrite comes before the next cluster: the slot is still that quality's.
        batch = []
        for (gid, part), st in state.items():
            need = max(st["quota"] - len(st["accepted"]), 0)
            rewrites, st["rewrite"] = st["rewrite"][:need], st["rewrite"][need:]
            batch += [(gid, part, c, why) for c, why in rewrites]
            fresh = need - len(rewrites)
            batch += [(gid, part, c, None) for c in st["todo"][:fresh]]
            st["todo"] = st["todo"][fresh:]
        if not batch:
            break
        answers = teacher.run([card_request(c, points[gid], vectors[gid], why) for gid, _, c, why in batch])
        if teacher.budget_exhausted:
            raise _budget_stop("anchor cards")
        for (gid, part, cluster, first_problem), result in zip(batch, answers, strict=True):
            tracker.add(gid, result)
            counts["cards"] += 1
            counts["teacher_cached"] += int(result.cached)
            accepted = state[(gid, part)]["accepted"]
            if not result.ok:
                why, card = f"anchor card failed: {result.error}", None
            elif not result.value.is_quality:
                why, card = "teacher: names a topic or kind of content, not a quality", result.value
            elif any(_norm_name(c.name) == _norm_name(result.value.name) for _, c in accepted):
                why, card = "same name as an anchor already accepted for this part", result.value
            elif problem := card_problem(result.value, cluster.records, notes[gid], judged[gid]):
                if first_problem is None and cluster.records >= 2:  # a card's text, not the cluster: rewrite once
                    state[(gid, part)]["rewrite"].append((cluster, problem))
                    counts["rewrites"] += 1
                    continue
                why, card = problem, result.value  # the slot goes to the next cluster in the next round
            else:
                accepted.append((cluster, result.value))
                counts["rewrites_accepted"] += int(first_problem is not None)
                continue
            if first_problem is not None:
                why = f"{why} (rewritten once; the first card: {first_problem})"
            rejected[gid].append(rejected_entry(cluster, points[gid], vectors[gid], why, card))

    out = {}
    for gid in samples:
        chosen = [(part, cluster, card) for (g, part), st in state.items() if g == gid
                  for cluster, card in st["accepted"]]
        chosen.sort(key=lambda t: (PARTS.index(t[0]) if t[0] in PARTS else 99, rank_key(t[1], points[gid])))
        anchors = [to_anchor(f"a{i:02d}", card, cluster, points[gid]) for i, (_, cluster, card) in enumerate(chosen)]
        counts["anchors"] += len(anchors)
        counts["rejected"] += len(rejected[gid])
        log.info("discover: group %s: %d points -> %d anchors, %d clusters dropped", gid, len(points[gid]),
                 len(anchors), len(rejected[gid]))
        out[gid] = (anchors, judgments[gid], rejected[gid])
    return out
