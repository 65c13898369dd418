"""Report sections about the run and its inputs: overview, inventory, group map, rubric cards.

A section is a function ``(Artifacts) -> str`` returning safe HTML; it raises
:class:`~mira.report.artifacts.NotRun` when the stage it reads has not finished.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mira.core.stages import STAGES
from mira.report import plots
from mira.report.artifacts import Artifacts, need, selection_entries, usage_totals
from mira.report.html import (
    Cell,
    badge,
    esc,
    fmt_compact,
    fmt_count,
    fmt_int,
    fmt_pct,
    fmt_seconds,
    missing_box,
    note,
    num,
    ratio,
    sparkbars,
    stat_tiles,
    table,
    text_cell,
)
from mira.run.artifact import dump
from mira.selection.notes import MOSTLY_RANDOM, random_share_warning, ranked_by, unscored_share


def group_heading(a: Artifacts, group: str) -> str:
    """"g0 — code: a, b" as safe HTML (just "g0" when the group has no separate label)."""
    label = a.group_label(group)
    return esc(group) + (f' <span class="muted">— {esc(label)}</span>' if label != group else "")


def group_selection(a: Artifacts) -> dict[str, dict[str, Any]]:
    """Per-group selection counts: from the summary's groups, else summed over its sources."""
    if not a.summary:
        return {}
    groups = selection_entries(a.summary, "groups")
    if groups:
        return groups
    summed: dict[str, dict[str, Any]] = {}
    for source, counts in selection_entries(a.summary, "sources").items():
        group = counts.get("group") or a.source_to_group.get(source, "?")
        target = summed.setdefault(group, {})
        for key, value in counts.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and key != "threshold":
                target[key] = target.get(key, 0) + value
    return summed


def overview(a: Artifacts) -> str:
    done = [s for s in STAGES if a.done(s)]
    tiles = [("run", a.run_name, str(a.run.root)),
             ("config fingerprint", a.config.fingerprint or "—", "hash of the resolved config"),
             ("stages done", f"{len(done)} / {len(STAGES)}", ", ".join(done) or "none yet")]
    inv = (a.inventory or {}).get("totals", {})
    groups = group_selection(a) if a.done("select") else {}
    tokens_in = sum(g.get("tokens_in") or 0 for g in groups.values()) or inv.get("tokens")
    summary = dump(a.summary) if groups and a.summary else {}
    warning = ""
    if groups:
        kept = sum(g.get("tokens_kept") or 0 for g in groups.values())
        tiles.append(("tokens in → kept", f"{fmt_compact(tokens_in)} → {fmt_compact(kept)}",
                      f"{fmt_pct(ratio(kept, tokens_in))} of tokens retained"))
        random = unscored_share(summary.get("totals") or {})
        if random is not None:  # what the retained share means: ranked, or a random draw
            fate = "rejected unscored" if summary.get("unscored_policy") == "reject" else "random fallback"
            tiles.append((f"ranked by {ranked_by(summary)}", f"{fmt_pct(1 - random)} of tokens",
                          f"{fmt_pct(random)} {fate}" if random else "none fell back to random"))
        found = random_share_warning(summary)
        if found:  # the first thing on the page: a "49.9% retained" that is a random sample is not a ranking
            warning = note(f"<strong>{esc(found[0].capitalize())}.</strong> {esc(found[1])}.", "warn")
    elif inv:
        tiles.append(("records / tokens in", f"{fmt_compact(inv.get('records'))} / {fmt_compact(inv.get('tokens'))}",
                      "selection not run yet"))
    parts = [warning, stat_tiles(tiles), "<h3>Headline per group</h3>"]
    if groups:
        rows = []
        for group, g in groups.items():
            usable = (g.get("tokens_kept") or 0) + (g.get("tokens_rejected") or 0)
            random = ratio(g.get("unscored_tokens"), usable) if "unscored_tokens" in g else None
            rows.append([text_cell(group, a.group_label(group)), text_cell(a.group_label(group), wrap=True),
                         num(g.get("tokens_in"), "compact"), num(g.get("tokens_kept"), "compact"),
                         num(ratio(g.get("tokens_kept"), g.get("tokens_in")), "pct"),
                         num(None if random is None else 1 - random, "pct"), _random_cell(random),
                         num(g.get("records_in")), num(g.get("kept"))])
        parts.append(table(["group", "label", "tokens in", "tokens kept", "kept share",
                            Cell("ranked<small>share of tokens</small>"),
                            Cell("random<small>every anchor masked</small>"), "records in",
                            "records kept"], rows))
    else:
        parts.append(missing_box("select"))
    parts.append("<h3>Stage timings</h3>")
    longest = max([m.seconds or 0 for m in a.markers.values()] + [1e-9])
    rows = []
    for stage in STAGES:
        marker = a.markers.get(stage)
        if not marker:
            # The report's own marker is written after this page, so it is "this page", not "not run".
            label = badge("this page", "muted") if stage == "report" else badge("not run", "muted")
            rows.append([text_cell(stage), Cell(label, 0), Cell("—"), Cell("—", -1),
                         Cell(""), Cell("")])
            continue
        seconds = marker.seconds
        bar = f'<span class="bar" style="width:{100 * (seconds or 0) / longest:.0f}%"></span>'
        counts = ", ".join(f"{k}={fmt_count(v)}"
                           for k, v in marker.counts.items() if not isinstance(v, (dict, list)))
        finished = str(marker.finished_at or "").replace("T", " ").rstrip("Z")[:16]
        rows.append([text_cell(stage), Cell(badge("done", "ok"), 1), text_cell(finished, marker.finished_at),
                     Cell(f'{fmt_seconds(seconds)}<div class="barbox">{bar}</div>', seconds or 0, "num"),
                     text_cell(counts, wrap=True), Cell(f"<code>{esc(marker.fingerprint)}</code>")])
    parts.append(table(["stage", "status", "finished", "duration", "counts", "fingerprint"], rows))
    parts.append("<h3>Teacher usage</h3>")
    parts.append(_usage_table(a))
    return "".join(parts)


def _random_cell(share: float | None) -> Cell:
    """A group's random share, marked when it is most of the group."""
    cell = num(share, "pct")
    if share is not None and share > MOSTLY_RANDOM:
        cell.html = f'{cell.html} {badge("mostly random", "warn")}'
    return cell


def _usage_table(a: Artifacts) -> str:
    if not a.usage:
        return ('<div class="box missing">No teacher usage recorded yet (<code>usage/*.json</code> is written by '
                "<code>mira discover</code> and <code>mira annotate</code>).</div>")
    rows: list[list[Cell]] = []
    total: dict[str, int] = {}
    keys = ("requests", "cache_hits", "sent", "failures", "retries", "prompt_tokens", "completion_tokens")
    for stage, entry in a.usage.items():
        t = usage_totals(entry)
        for key in keys:
            total[key] = total.get(key, 0) + (t.get(key) or 0)
        answered = (t.get("requests") or 0) - (t.get("cache_hits") or 0) - (t.get("budget_skipped") or 0)
        latency = ratio(t.get("latency_s"), answered) if answered > 0 else None
        exhausted = badge("budget reached", "warn") if entry.budget_exhausted else badge("within", "ok")
        sub = f"{entry.model or '?'} · {entry.sessions} session(s)"
        rows.append([Cell(f'{esc(stage)}<div class="sub muted">{esc(sub)}</div>', stage), num(t.get("requests")),
                     Cell(f"{fmt_int(t.get('cache_hits'))} <span class='muted'>"
                          f"({fmt_pct(ratio(t.get('cache_hits'), t.get('requests')), 0)})</span>",
                          t.get("cache_hits") or 0, "num"),
                     num(t.get("sent")), num(t.get("failures")), num(t.get("retries")),
                     num(t.get("prompt_tokens"), "compact"), num(t.get("completion_tokens"), "compact"),
                     num(latency, "float", 1), Cell(exhausted, int(entry.budget_exhausted))])
    foot = [Cell("<strong>all</strong>")] + [num(total[k], "compact" if "tokens" in k else "int")
                                            for k in keys] + [Cell(""), Cell("")]
    return table(["stage", "requests", "cache hits", "sent", "failures", "retries", "prompt tok",
                  "completion tok", "s / answer", "budget"], rows, foot=foot)


def inventory(a: Artifacts) -> str:
    inventory = need(a, "ingest", a.inventory, "inventory.json")
    rows = []
    sources = inventory.get("sources", {})
    for name in [s for s in a.sources if s in sources]:
        s = sources[name]
        reasons = s.get("quarantine_reasons") or {}
        top = "<br>".join(f"{esc(r)} <span class='muted'>({fmt_int(c)})</span>" for r, c in list(reasons.items())[:2])
        if len(reasons) > 2:
            top += f"<br><span class='muted'>+{len(reasons) - 2} more</span>"
        length = s.get("length_tokens") or {}
        hist = length.get("histogram") or {}
        adds_up = s.get("records") == (s.get("ok") or 0) + (s.get("quarantined") or 0)
        where = f"{a.source_to_group.get(name, 'no group')} · {s.get('format') or '?'} · {s.get('reader') or '?'}"
        spread = " · ".join(f"{k} {fmt_compact(length.get(k))}" for k in ("p50", "p90", "max"))
        rows.append([Cell(f'{esc(name)}<div class="sub muted">{esc(where)}</div>', name),
                     num(s.get("records")), num(s.get("ok")),
                     Cell(f"{fmt_int(s.get('quarantined'))} <span class='muted'>"
                          f"({fmt_pct(ratio(s.get('quarantined'), s.get('records')))})</span>",
                          s.get("quarantined") or 0, "num"),
                     Cell(top or "—", sum(reasons.values()), "small",
                          ", ".join(f"{r}: {c}" for r, c in reasons.items()) or None),
                     num(s.get("tokens"), "compact"),
                     Cell(sparkbars(list(hist.values()), [f"{k} tokens" for k in hist])
                          + f'<div class="sub muted">{esc(spread)}</div>', length.get("p50"), "spark-cell"),
                     Cell("✓" if adds_up else "✗", int(adds_up), "ok" if adds_up else "bad",
                          "records = ok + quarantined")])
    totals = inventory.get("totals", {})
    foot = [Cell("<strong>total</strong>"), num(totals.get("records")), num(totals.get("ok")),
            num(totals.get("quarantined")), Cell(""), num(totals.get("tokens"), "compact"), Cell(""), Cell("")]
    intro = (f"<p>{fmt_int(len(sources))} sources, {fmt_int(totals.get('records'))} records, "
             f"{fmt_compact(totals.get('tokens'))} tokens. Quarantined records are kept in "
             "<code>quarantine/&lt;source&gt;.jsonl</code> with their reason, never silently dropped. "
             "Lengths are in tokens (power-of-two buckets; hover a bar for its count).</p>")
    return intro + table(["source", "records", "ok", "quarantined", "top reasons", "tokens",
                          "length (tokens)", "adds up"], rows, foot=foot)


def group_map(a: Artifacts) -> str:
    g = need(a, "group", a.groups, "groups.json")
    parts = []
    chosen = g.get("k")
    tiles = [("chosen k", str(chosen), f"chosen by {g.get('chosen_by', '?')}"),
             ("embedding model", str(g.get("embed_model", "—")),
              f"{g.get('sample_per_source', '—')} records per source")]
    parts.append(stat_tiles(tiles))
    sim = g.get("similarity") or {}
    names, matrix = sim.get("sources") or [], np.array(sim.get("matrix") or [], float)
    figures = []
    if names and matrix.shape == (len(names), len(names)):
        order = sorted(range(len(names)), key=lambda i: a.sources.index(names[i]) if names[i] in a.sources else i)
        ordered = [names[i] for i in order]
        matrix = matrix[np.ix_(order, order)]
        blocks, start = [], 0
        for i in range(1, len(ordered) + 1):
            if i == len(ordered) or a.source_to_group.get(ordered[i]) != a.source_to_group.get(ordered[start]):
                blocks.append((a.source_to_group.get(ordered[start], "?"), start, i))
                start = i
        figures.append(plots.similarity_heatmap(ordered, matrix, blocks))
    k_scores = {int(k): float(v) for k, v in (g.get("k_scores") or {}).items() if v is not None}
    side = plots.k_scores(k_scores, chosen) if k_scores else "<p class='muted'>k was set in the config.</p>"
    parts.append(f'<div class="row"><div class="grow">{"".join(figures)}</div><div class="side">'
                 f"<h4>Silhouette per k</h4>{side}</div></div>")
    rows = []
    for group in g.get("groups", []):
        chips = " ".join(f'<span class="chip">{esc(s)}</span>' for s in group.get("sources", []))
        rows.append([text_cell(group.get("id")), text_cell(group.get("label"), wrap=True), Cell(chips, None, "wrap"),
                     num(len(group.get("sources", []))), num(group.get("within_similarity"), "float"),
                     Cell(badge("pinned", "warn") if group.get("pinned") else "")])
    parts.append("<h3>Group membership</h3>")
    parts.append(table(["group", "label", "sources", "n", "within similarity", ""], rows))
    return "".join(parts)


def rubric_cards(a: Artifacts) -> str:
    need(a, "discover", any(a.rubric(g) for g in a.group_ids), "rubrics/<group>.jsonl")
    parts = []
    for group in a.group_ids:
        anchors = a.rubric(group)
        mask = a.mask(group) or {}
        masked: dict[str, list[tuple[str, str]]] = {}
        cells = 0
        for source, per_anchor in (mask.get("cells") or {}).items():
            for anchor, cell in per_anchor.items():
                cells += 1
                if cell.get("masked"):
                    masked.setdefault(anchor, []).append((source, cell.get("reason") or "masked"))
        n_masked = sum(len(v) for v in masked.values())
        summary = (f"{fmt_int(n_masked)} of {fmt_int(cells)} (source, anchor) cells masked"
                   if mask else "reliability masks: distill not run yet")
        parts.append(f"<h3>{group_heading(a, group)}</h3>"
                     f'<p class="muted">{len(anchors)} anchors · {esc(summary)}</p><div class="cards">')
        if not anchors:
            parts.append(missing_box("discover", f"No rubric for group {group}."))
        for anchor in anchors:
            parts.append(_card(anchor, masked.get(anchor.get("id", ""), [])))
        parts.append("</div>")
        parts.append(_rejected(a.rubric_rejected(group)))
    return "".join(parts)


def _rejected(entries: list[dict[str, Any]]) -> str:
    """Why discover dropped the other candidate anchors (a reader judges the rubric by them too)."""
    if not entries:
        return ""
    rows = [[str(e.get("name") or ""), str(e.get("part") or "whole"), fmt_int(e.get("support")),
             fmt_int(e.get("records")), str(e.get("reason") or "")] for e in entries]
    return (f'<details class="more"><summary>{len(entries)} candidate anchor(s) rejected, and why</summary>'
            + table(["candidate", "part", "points", "records", "reason"], rows) + "</details>")


def _card(anchor: dict[str, Any], masked: list[tuple[str, str]]) -> str:
    sources = anchor.get("sources") or {}
    chips = " ".join(f'<span class="chip">{esc(s)} <b>{fmt_int(c)}</b></span>' for s, c in sources.items())
    scale = "".join(f'<div class="scale-row"><span class="scale-key {k}">{k}</span>'
                    f"<span>{esc(anchor.get(k))}</span></div>" for k in ("low", "mid", "high") if anchor.get(k))
    mask_html = ""
    if masked:
        items = "".join(f'<li><b>{esc("all sources" if s == "*" else s)}</b>: {esc(r)}</li>' for s, r in masked)
        mask_html = f'<div class="masked-list"><span class="badge warn">masked</span><ul>{items}</ul></div>'
    return (f'<article class="card"><header><span class="anchor-id">{esc(anchor.get("id"))}</span>'
            f'<h4>{esc(anchor.get("name"))}</h4>{badge(str(anchor.get("part") or "whole"), "part")}</header>'
            f'<p>{esc(anchor.get("definition"))}</p><div class="scale">{scale}</div>'
            + (f'<p class="exemplar"><span class="muted">exemplar</span> {esc(anchor.get("exemplar"))}</p>'
               if anchor.get("exemplar") else "")
            + f'<footer><span class="muted">support</span> {fmt_int(anchor.get("support"))} points from '
            f'{fmt_int(anchor.get("records"))} records<div class="chips">{chips}</div>{mask_html}</footer></article>')


