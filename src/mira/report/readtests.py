"""Read-tests: records a person should read to trust (or distrust) the scores.

Per source: the validation records where student and teacher disagree most, and the labelled
records with the highest and lowest final score, each with its text and the teacher's rationales.
Student predictions come from ``students/<group>/validation.parquet`` (held-out records) when
distill wrote it; otherwise labels are joined with the score shards on record id, which mixes in
training records (said so on the page). All record text is escaped: records are untrusted input.
Records are keyed by (source, id) (:func:`mira.corpus.records.record_key`): ids repeat across sources.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

from mira.corpus.records import record_key
from mira.report.artifacts import Artifacts, need
from mira.report.html import Cell, clipped_text, esc, fmt_float, fmt_int, note, table, text_cell
from mira.report.sections import group_heading

DISAGREEMENTS = 4
EXTREMES = 3
TEXT_CHARS = 320
# Column spellings accepted for validation.parquet, teacher then student, per anchor id.
PAIR_PATTERNS = (("{a}__teacher", "{a}__student"), ("teacher_{a}", "student_{a}"), ("{a}_teacher", "{a}_student"),
                 ("teacher.{a}", "student.{a}"), ("{a}", "{a}__pred"))


def _float(value: Any) -> float:
    try:
        return math.nan if value is None else float(value)
    except (TypeError, ValueError):
        return math.nan


def _pairs(columns: set[str], anchors: list[str]) -> dict[str, tuple[str, str]]:
    for teacher, student in PAIR_PATTERNS:
        found = {a: (teacher.format(a=a), student.format(a=a)) for a in anchors
                 if teacher.format(a=a) in columns and student.format(a=a) in columns}
        if found:
            return found
    return {}


def _anchors(a: Artifacts, group: str, labels: Any) -> list[str]:
    metrics = a.metrics(group) or {}
    anchors = metrics.get("anchors") or [r.get("id") for r in a.rubric(group)]
    if not anchors and labels is not None:
        anchors = [c[: -len("__why")] for c in labels.column_names if c.endswith("__why")]
    return [x for x in anchors if x]


def _predictions(a: Artifacts, group: str, labels: dict[str, dict[str, Any]], anchors: list[str]
                 ) -> tuple[dict[str, dict[str, tuple[float, float]]], str]:
    """record id -> anchor -> (teacher, student), and where the student numbers came from."""
    validation = a.validation(group)
    if validation is not None:
        pairs = _pairs(set(validation.column_names), anchors)
        id_col = "record_id" if "record_id" in validation.column_names else "id"
        if pairs and id_col in validation.column_names:
            out = {}
            for row in validation.to_pylist():
                key = record_key(str(row["source"]), str(row[id_col])) if "source" in row else str(row[id_col])
                out[key] = {x: (_float(row[t]), _float(row[s])) for x, (t, s) in pairs.items()}
            return out, ("validation records, each predicted by a student that never saw it "
                         f"(students/{group}/validation.parquet)")
    out = {}
    for source, ids in _ids_by_source(labels).items():
        for rid, srow in a.student_scores_for(source, ids, anchors).items():
            key = record_key(source, rid)
            out[key] = {x: (_float(labels[key].get(x)), _float(srow.get(x))) for x in anchors}
    return out, "labelled records joined with scores/ (includes the student's training records)"


def read_tests(a: Artifacts) -> str:
    need(a, "annotate", any(a.labels(g) is not None for g in a.group_ids), "labels/<group>.parquet")
    parts = []
    for group in a.group_ids:
        table_ = a.labels(group)
        if table_ is None:
            continue
        anchors = _anchors(a, group, table_)
        names = a.anchor_names(group)
        rows = table_.to_pylist()
        labels = {record_key(str(r.get("source")), str(r["record_id"])): r for r in rows if r.get("ok", True)}
        failed = [r for r in rows if not r.get("ok", True)]
        preds, origin = ({}, "") if not a.done("distill") and not a.done("score") else \
            _predictions(a, group, labels, anchors)
        finals = _final_scores(a, labels, anchors)
        shown = dict(preds)
        for rid, row in finals[2].items():  # student numbers for records outside the validation file
            shown.setdefault(rid, {x: (_float(labels[rid].get(x)), _float(row.get(x))) for x in anchors})
        parts.append(f"<h3>{group_heading(a, group)}</h3>")
        if failed:
            errors = Counter(str(r.get("error") or "unknown").split(":")[0] for r in failed).most_common(2)
            parts.append(f'<p class="muted">{fmt_int(len(failed))} of {fmt_int(len(rows))} label rows failed '
                         f'({esc("; ".join(f"{e}: {n}" for e, n in errors))}); they are kept for audit and '
                         "students ignore them.</p>")
        parts.append(f'<p class="muted">Student predictions: {esc(origin or "not available yet (distill not run)")}. '
                     f"Final scores: {esc(finals[1])}.</p>")
        for source in sorted({str(r.get("source")) for r in labels.values()},
                             key=lambda s: a.sources.index(s) if s in a.sources else 99):
            ids = [rid for rid, r in labels.items() if str(r.get("source")) == source]
            parts.append(_source_block(source, ids, labels, preds, shown, finals[0], anchors, names))
    return "".join(parts) or note("No labelled records yet.", "missing")


def _final_scores(a: Artifacts, labels: dict[str, dict[str, Any]], anchors: list[str]
                  ) -> tuple[dict[str, float], str, dict[str, dict[str, Any]]]:
    """Final aggregate score of each labelled record (from scores/, with its rows), else the teacher mean."""
    import pyarrow as pa

    if a.done("score"):
        found, rows = {}, {}
        for source, ids in _ids_by_source(labels).items():
            hits = a.student_scores_for(source, ids, None)
            if not hits:
                continue
            aggregates = a.aggregates(pa.Table.from_pylist(list(hits.values())))
            for (rid, row), value in zip(hits.items(), aggregates, strict=True):
                key = record_key(source, rid)
                found[key], rows[key] = _float(value), row
        if found:
            origin = "aggregate of the student scores under the current reliability mask, as select computes it"
            return found, origin, rows
    means = {}
    for rid, row in labels.items():
        values = [_float(row.get(x)) for x in anchors]
        values = [v for v in values if not math.isnan(v)]
        means[rid] = sum(values) / len(values) if values else math.nan
    return means, "mean teacher label (scores not available yet)", {}


def _ids_by_source(labels: dict[str, dict[str, Any]]) -> dict[str, set[str]]:
    """The records' own ids per source, for joins with that source's score shards."""
    by_source: dict[str, set[str]] = {}
    for row in labels.values():
        by_source.setdefault(str(row.get("source")), set()).add(str(row["record_id"]))
    return by_source


def _source_block(source: str, ids: list[str], labels: dict[str, dict[str, Any]],
                  preds: dict[str, dict[str, tuple[float, float]]], shown: dict[str, dict[str, tuple[float, float]]],
                  finals: dict[str, float],
                  anchors: list[str], names: dict[str, str]) -> str:
    out = [f'<div class="readtest"><h4>{esc(source)} <span class="muted">({len(ids)} labelled)</span></h4>']
    gaps = []
    for rid in ids:
        pairs = preds.get(rid) or {}
        diffs = [abs(t - s) for t, s in pairs.values() if not (math.isnan(t) or math.isnan(s))]
        if diffs:
            gaps.append((sum(diffs) / len(diffs), rid))
    gaps.sort(reverse=True)
    if gaps:
        out.append('<h5>Largest student–teacher disagreements</h5><div class="two-col">')
        for gap, rid in gaps[:DISAGREEMENTS]:
            out.append(_record(rid, labels[rid], f"mean |Δ| {fmt_float(gap)}", anchors, names, preds.get(rid)))
        out.append("</div>")
    else:
        out.append('<p class="muted">No student predictions for this source\'s labelled records.</p>')
    ranked = sorted((s, rid) for rid in ids if not math.isnan(s := finals.get(rid, math.nan)))
    if ranked:
        top = [_record(rid, labels[rid], f"score {fmt_float(s)}", anchors, names, shown.get(rid))
               for s, rid in ranked[::-1][:EXTREMES]]
        bottom = [_record(rid, labels[rid], f"score {fmt_float(s)}", anchors, names, shown.get(rid))
                  for s, rid in ranked[:EXTREMES]]
        out.append(f'<div class="two-col"><div><h5>Top by score</h5>{"".join(top)}</div>'
                   f'<div><h5>Bottom by score</h5>{"".join(bottom)}</div></div>')
    out.append("</div>")
    return "".join(out)


def _record(rid: str, row: dict[str, Any], headline: str, anchors: list[str], names: dict[str, str],
            pairs: dict[str, tuple[float, float]] | None) -> str:
    rows, chips, worst = [], [], None
    for anchor in anchors:
        teacher, student = pairs[anchor] if pairs and anchor in pairs else (_float(row.get(anchor)), math.nan)
        delta = student - teacher
        why = row.get(f"{anchor}__why") or ""
        far = abs(delta) >= 2.5
        if not math.isnan(delta) and (worst is None or abs(delta) > abs(worst[1])):
            worst = (anchor, delta, teacher, student, why)
        shown = fmt_float(teacher, 1) if math.isnan(student) else f"{fmt_float(teacher, 1)}→{fmt_float(student, 1)}"
        chips.append(f'<span class="ascore{" far" if far else ""}" title="{esc(names.get(anchor, anchor))}: '
                     f'{esc(why)}">{esc(anchor)} <b>{esc(shown)}</b></span>')
        rows.append([text_cell(f"{anchor} {names.get(anchor, '')}".strip()),
                     Cell(fmt_float(teacher, 1), None, "num"), Cell(fmt_float(student, 1), None, "num"),
                     Cell(fmt_float(delta, 1), None, "num" + (" bad" if far else "")), text_cell(why, wrap=True)])
    scores = table(["anchor", "teacher", "student", "Δ", "teacher's rationale"], rows, sortable=False,
                   cls="compact")
    legend = "teacher→student" if pairs else "teacher"
    gap = ""
    if worst and abs(worst[1]) >= 1.0:
        anchor, _, teacher, student, why = worst
        gap = (f'<p class="gap">Largest gap on <b>{esc(names.get(anchor, anchor))}</b>: teacher '
               f'{fmt_float(teacher, 1)}, student {fmt_float(student, 1)}. '
               f'<span class="muted">Teacher:</span> {esc(why) or "<span class=muted>no rationale</span>"}</p>')
    return (f'<div class="record-card"><div class="rec-head"><code>{esc(row.get("record_id", rid))}</code>'
            f'<span class="pill">{esc(headline)}</span><span class="muted">{esc(row.get("tokens"))} tokens</span>'
            f'</div><div class="ascores"><span class="muted">{legend}:</span> {"".join(chips)}</div>{gap}'
            f'{clipped_text(row.get("text"), TEXT_CHARS)}'
            f'<details class="more"><summary>per-anchor scores and rationales</summary>{scores}</details></div>')
