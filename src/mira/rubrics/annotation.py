"""Phase-2 annotation: teacher requests scoring a record on every anchor of its group, and their label rows."""

from __future__ import annotations

import json
import logging
import math
import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, create_model

from mira.artifacts.students import labels_schema
from mira.core.config import RunConfig
from mira.core.hashing import stable_rank
from mira.corpus.records import Record, Rendering, render
from mira.corpus.sources import SourceInfo, sample_source, source_quotas
from mira.io.files import atomic_path
from mira.rubrics.allocation import allocate_labels
from mira.rubrics.annotation_v3 import bad_targets, refuse_bad_targets
from mira.run.rundir import RunDir

if TYPE_CHECKING:  # the teacher layer is imported where it is used: importing annotate stays cheap
    from mira.artifacts.anchors import Anchor
    from mira.teacher import Prompt, TeacherRequest

log = logging.getLogger(__name__)
VERSION = "annotate-v2"
PROMPT = "annotate"
KIND = {"text": "a text document", "code": "a source code file", "qa": "a question with its answer",
        "chat": "a chat conversation", "agent": "an agent trajectory with tool calls"}
PART = {"whole": "the whole record", "question": "the question", "trace": "the reasoning trace",
        "answer": "the final answer", "both": "the reasoning trace and the answer together",
        "calls": "the tool calls and their arguments", "results": "the tool results and how they are used"}
# Output tokens per anchor, for the budget of one answer and the dry-run estimate. Qwen2.5
# pretty-prints and splits digits: v1's `"a00": {"score": 7},` takes 43 tokens for 3 anchors,
# v2's flat `"a00": 7,` 34 (benchmarks/labels.py); the cap leaves room for longer whitespace.
TOKENS_PER_SCORE = 12
TOKENS_PER_FLAT_SCORE = 10


def protocol_prompt(config: RunConfig) -> Any:
    """The prompt file of ``annotation.protocol`` (``annotate_v3`` -> prompts/annotate_v3.md)."""
    from mira.teacher import load_prompt

    return load_prompt(PROMPT, int(config.annotation.protocol.rsplit("_v", 1)[1]))


def labels_path(run: RunDir, group: str, consistency: bool = False) -> Path:
    return run.path("labels", f"{group}.consistency.parquet" if consistency else f"{group}.parquet")


# --- prompt and schema ---------------------------------------------------------------------------

def flat_protocol(prompt: Prompt, rationales: bool) -> bool:
    """annotate_v2 without rationales answers ``{"a00": 7, "a01": 5}``; otherwise one object per anchor."""
    return prompt.version >= 2 and not rationales


def answer_schema(anchor_ids: Sequence[str], rationales: bool, rationale_chars: int,
                  flat: bool = False) -> type[BaseModel]:
    """A pydantic model with one required property per anchor id, in the given order."""
    from mira.teacher import Score

    strict = ConfigDict(extra="forbid")
    item: Any
    if flat:
        item = Score
    else:  # a single create_model assignment: mypy reads a second one to `item` as redefining a class
        why: dict[str, Any] = {"why": (str, Field(max_length=rationale_chars))} if rationales else {}
        item = create_model("AnchorJudgment" if rationales else "AnchorScore", __config__=strict, **why,
                            score=(Score, ...))
    # Field names are positional (f0, f1, ...) and the anchor id is the alias: ids need not be
    # Python identifiers, and grammar-constrained decoding emits the properties in this order.
    fields: dict[str, Any] = {f"f{i}": (item, Field(alias=aid)) for i, aid in enumerate(anchor_ids)}
    return create_model("Annotation", __config__=strict, **fields)


def anchor_card(anchor: Anchor) -> str:
    lines = [f"[{anchor.id}] {anchor.name} (look at: {PART.get(anchor.part, anchor.part)})",
             f"  Definition: {anchor.definition}"]
    for label, guide in (("0-3", anchor.low), ("4-6", anchor.mid), ("7-10", anchor.high)):
        if guide:
            lines.append(f"  {label}: {guide}")
    return "\n".join(lines)


def answer_shape(ids: Sequence[str], rationales: bool, rationale_chars: int, flat: bool) -> str:
    if flat:
        # The literal keys in order: a weak teacher copies a template better than it follows prose.
        return "Answer with this JSON object, each <score> an integer 0-10: {" + ", ".join(
            f'"{aid}": <score>' for aid in ids) + "}"
    if rationales:
        return (f"Answer with a JSON object with one key per dimension id, in the order listed "
                f"({', '.join(ids)}); each value is {{\"why\": a reason of at most {rationale_chars} characters, "
                f"\"score\": an integer 0-10}}.")
    return (f"Answer with a JSON object with one key per dimension id, in the order listed "
            f"({', '.join(ids)}); each value is {{\"score\": an integer 0-10}}. No reasons.")


def output_tokens(n_anchors: int, rationales: bool, rationale_chars: int, flat: bool) -> int:
    """The answer's token budget (also the dry-run estimate's output size)."""
    if flat:
        return 16 + TOKENS_PER_FLAT_SCORE * n_anchors
    return 32 + (TOKENS_PER_SCORE + (rationale_chars // 3 if rationales else 0)) * n_anchors


def build_request(prompt: Prompt, anchors: Sequence[Anchor], record: Record, rendering: Rendering, rationales: bool,
                  rationale_chars: int, tag: str) -> TeacherRequest:
    from mira.teacher import TeacherRequest, wrap_record

    ids = [a.id for a in anchors]
    flat = flat_protocol(prompt, rationales)
    messages = prompt.render(kind=KIND.get(record.format, "a record"),
                             anchors="\n\n".join(anchor_card(a) for a in anchors),
                             answer_shape=answer_shape(ids, rationales, rationale_chars, flat),
                             record=wrap_record(rendering.text))
    return TeacherRequest(messages=messages, schema=answer_schema(ids, rationales, rationale_chars, flat),
                          prompt_version=prompt.id,
                          max_tokens=output_tokens(len(ids), rationales, rationale_chars, flat),
                          tag=tag, score_key=tuple(ids) if flat else "score")


def _answer_order(raw: str | None, fallback: list[str]) -> list[str]:
    """Anchor ids in the order the answer wrote them (what expected_scores is aligned with)."""
    if not raw:
        return fallback
    text = raw.strip()
    if text.startswith("```"):
        text = text.strip("`").removeprefix("json").strip()
    try:
        data = json.loads(text)
    except ValueError:
        return fallback
    return list(data) if isinstance(data, dict) and set(data) == set(fallback) else fallback


def label_row(record: Record, rendering: Rendering, anchor_ids: list[str], asked_order: list[str],
              result: Any) -> dict[str, Any]:
    row: dict[str, Any] = {"record_id": record.id, "source": record.source, "text": rendering.text,
                           "format": record.format, "tokens": int(rendering.tokens), "ok": bool(result.ok),
                           "error": None if result.ok else str(result.error)}
    if not result.ok:
        for aid in anchor_ids:
            row[aid], row[f"{aid}__sampled"], row[f"{aid}__why"] = None, None, None
            row[f"{aid}__target_kind"] = None
        return row
    answer = result.value.model_dump(by_alias=True)
    expected: dict[str, float | None] = {}
    if result.expected_scores and len(result.expected_scores) == len(anchor_ids):
        expected = dict(zip(_answer_order(result.raw, asked_order), result.expected_scores, strict=True))
    for aid in anchor_ids:
        item = answer[aid]  # flat protocol: the score itself; else {"score": ..., "why"?: ...}
        sampled = int(item["score"] if isinstance(item, dict) else item)
        target = expected.get(aid)
        row[aid] = float(target) if target is not None else float(sampled)
        # Provenance: an expectation, or the sampled integer where logprobs were missing or did
        # not determine the expectation (teacher/scores.py).
        row[f"{aid}__target_kind"] = "expected" if target is not None else "sampled"
        row[f"{aid}__sampled"] = sampled
        row[f"{aid}__why"] = item.get("why", "") if isinstance(item, dict) else ""
    return refuse_bad_targets(row, anchor_ids)


def write_labels(path: Path, rows: list[dict[str, Any]], anchor_ids: list[str]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    for row in rows:  # label_row fails such rows; a row built elsewhere must not slip through
        if row["ok"] and bad_targets(row, anchor_ids):
            raise ValueError(f"labels row {row['source']}/{row['record_id']} is ok with a target outside 0-10: "
                             f"{', '.join(f'{a}={row[a]!r}' for a in bad_targets(row, anchor_ids))}")
    schema = labels_schema(anchor_ids)  # the catalogue owns the format (mira.artifacts.students)
    table = pa.Table.from_pylist(rows, schema=schema)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


# --- sampling ------------------------------------------------------------------------------------

def consistency_subset(records: list[Record], n: int, seed: int) -> list[Record]:
    """`n` records of the sample, spread over its sources (round robin over seeded orders)."""
    by_source: dict[str, list[Record]] = {}
    for record in sorted(records, key=lambda r: stable_rank(seed + 1, r.id)):
        by_source.setdefault(record.source, []).append(record)
    out: list[Record] = []
    while len(out) < min(n, len(records)):
        for items in by_source.values():
            if items and len(out) < n:
                out.append(items.pop(0))
    return out


def shuffled(anchors: list[Anchor], seed: int, key: str) -> list[Anchor]:
    """The anchors in a seeded order that differs from the original (when there are two or more)."""
    order = list(anchors)
    if len(order) < 2:
        return order
    rng = random.Random(f"{seed}:{key}")
    for _ in range(8):
        rng.shuffle(order)
        if [a.id for a in order] != [a.id for a in anchors]:
            return order
    return list(reversed(anchors))


def validation_rows(n: int, val_fraction: float | None) -> int:
    """Validation rows distill gets from a source with `n` labels: all of them when cross-fitting
    (`val_fraction` None, see distill.crossfit_predictions), else its held-out share (distill.split)."""
    if val_fraction is None:
        return n if n >= 2 else 0
    return 0 if n < 2 else min(n - 1, max(1, round(n * val_fraction)))


def short_sources(config: RunConfig, members: list[SourceInfo], quotas: Mapping[str, int]) -> list[str]:
    """Sources of a group that get fewer than annotation.min_validation_per_source validation rows, and why."""
    wanted = config.annotation.min_validation_per_source
    vf = None if config.student.validation == "crossfit" else config.student.val_fraction
    if wanted <= 0 or not members:
        return []
    available = {i.name: i.ok for i in members}
    need = max(2, wanted if vf is None else math.ceil(wanted / vf))
    while validation_rows(need, vf) < wanted:
        need += 1
    enough = sum(min(a, need) for a in available.values())  # the sample that reaches it where possible
    out = []
    for name, quota in quotas.items():
        got = validation_rows(quota, vf)
        if got >= wanted:
            continue
        if available[name] < need:
            out.append(f"{name} {got} (only {available[name]} usable records)")
        else:
            out.append(f"{name} {got} (a group sample of {enough} would give {wanted})")
    return out


def group_infos(infos: dict[str, SourceInfo], sources: list[str]) -> list[SourceInfo]:
    return [infos[s] for s in sources if s in infos and infos[s].ok > 0]


# --- stage protocol ------------------------------------------------------------------------------



def load_anchors(run: RunDir, group: str) -> list[Anchor] | None:
    from mira.artifacts.anchors import load_rubric, rubric_is_empty, rubric_path

    if not rubric_path(run, group).exists() or rubric_is_empty(run, group):
        return None  # discover found no anchor for this group; a malformed edit still raises
    return load_rubric(run, group)




def group_quotas(config: RunConfig, groups: Mapping[str, list[SourceInfo]]) -> dict[str, dict[str, int]]:
    """Label records per group and source (``annotation.allocation``): `groups` maps each group that
    will be labelled (it has a rubric) to its usable member sources."""
    cfg = config.annotation
    if cfg.allocation == "even":
        return {g: source_quotas({i.name: i.ok for i in members}, cfg.records_per_group)
                for g, members in groups.items()}
    tokens = {g: {i.name: i.tokens for i in members} for g, members in groups.items()}
    available = {i.name: i.ok for members in groups.values() for i in members}
    total = cfg.total_records if cfg.total_records is not None else cfg.records_per_group * len(groups)
    return allocate_labels(tokens, available, total, cfg.min_per_group, cfg.min_per_source)


def group_requests(config: RunConfig, prompt: Any, tokenizer: Any, anchors: list[Any], group: str,
                   members: list[SourceInfo], quotas: Mapping[str, int]) -> tuple[
                       list[Record], dict[str, Rendering], list[tuple[Record, list[Any], list[Any]]],
                       list[list[int]], list[Any]]:
    """A group's sample (`quotas` records of each member source), its renderings, each label's
    (record, anchor order, requests) (first scorings, then re-scorings), each label's positions in
    the sending order, and every request in that order: what `run` sends and the dry run prices."""
    cfg = config.annotation
    records = [r for info in members if quotas.get(info.name)
               for r in sample_source(config, info, quotas[info.name], cfg.seed)]
    renderings = [render(r, tokenizer, config.render.max_tokens, config.render.windows) for r in records]
    rendered = dict(zip((r.key for r in records), renderings, strict=True))
    again = consistency_subset(records, cfg.self_consistency_records, cfg.seed)
    labels = _label_plan(config, prompt, anchors, group, records, again, rendered)
    requests, positions = schedule([reqs for _, _, reqs in labels], config.teacher.concurrency)
    return records, rendered, labels, positions, requests


def _label_plan(config: RunConfig, prompt: Any, anchors: list[Any], group: str, records: list[Record],
                again: list[Record], rendered: dict[str, Rendering]) -> list[tuple[Record, list[Any], list[Any]]]:
    """(record, anchor order, its requests) per label: the sample, then the re-scored records."""
    from mira.rubrics import annotation_v3

    cfg = config.annotation
    if prompt.version >= 3:
        def v3(r: Record, variant: bool) -> tuple[Record, list[Any], list[Any]]:
            tag = f"{r.key} (consistency)" if variant else r.key
            return r, anchors, annotation_v3.build_requests(prompt, anchors, r, rendered[r.key], tag, variant, None,
                                                          KIND.get(r.format, "a record"), PART)
        # The re-scoring is the equivalent variant (guides listed HIGH -> LOW), see annotate_v3.
        return [v3(r, False) for r in records] + [v3(r, True) for r in again]
    # One shuffled order per group, not per record: every anchor still moves, and the re-scoring
    # requests share their prefix, so the server's prompt cache serves it.
    order = shuffled(anchors, cfg.seed, group)
    return ([(r, anchors, [build_request(prompt, anchors, r, rendered[r.key], cfg.rationales, cfg.rationale_chars,
                                         r.key)]) for r in records]
            + [(r, order, [build_request(prompt, order, r, rendered[r.key], cfg.rationales, cfg.rationale_chars,
                                         f"{r.key} (consistency)")]) for r in again])


def schedule(per_label: list[list[Any]], width: int) -> tuple[list[Any], list[list[int]]]:
    """Requests in sending order and, per label, the positions of its requests.

    Labels are taken `width` (the teacher's concurrency, = the local server's slots) at a time and
    their requests interleaved, so the requests in flight belong to different labels. A label of
    several requests (annotate_v3) is pinned to one slot: the slot's prompt cache then holds its
    record, and each further request processes only its question.
    """
    width = max(1, width)
    flat: list[Any] = []
    positions: list[list[int]] = [[] for _ in per_label]
    for start in range(0, len(per_label), width):
        chunk = range(start, min(start + width, len(per_label)))
        for step in range(max(len(per_label[i]) for i in chunk)):
            for i in chunk:
                if step < len(per_label[i]):
                    if len(per_label[i]) > 1:
                        per_label[i][step].slot = i - start
                    positions[i].append(len(flat))
                    flat.append(per_label[i][step])
    return flat, positions


def answers_row(prompt: Any, record: Record, rendering: Rendering, ids: list[str], order: list[Any],
         results: list[Any]) -> dict[str, Any]:
    if prompt.version >= 3:
        from mira.rubrics import annotation_v3

        return annotation_v3.label_row(record, rendering, ids, results)
    return label_row(record, rendering, ids, [a.id for a in order], results[0])


def min_label_rows() -> int:
    from mira.students import MIN_LABEL_ROWS

    return MIN_LABEL_ROWS
