"""Report sections about scores and selection: distributions, retention, reliability, length."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from mira.report import plots
from mira.report.artifacts import SCORE_BINS, Artifacts, need, selection_entries
from mira.report.html import (Cell, badge, esc, fmt_compact, fmt_float, fmt_int, fmt_pct, note, num, ratio, spearman,
                              table, text_cell)
from mira.report.sections import group_heading, group_selection


def _group_index(a: Artifacts, group: str | None) -> int:
    return a.group_ids.index(group) if group in a.group_ids else len(a.group_ids)


def _members(a: Artifacts, group: str, sources: list[str]) -> list[str]:
    return [s for s in sources if a.source_to_group.get(s) == group]


def _grouped_sources(a: Artifacts, sources: list[str]) -> list[tuple[str, list[str]]]:
    groups = [(g, _members(a, g, sources)) for g in a.group_ids]
    loose = [s for s in sources if a.source_to_group.get(s) not in a.group_ids]
    if loose:
        groups.append(("ungrouped", loose))
    return [(g, m) for g, m in groups if m]


def score_distributions(a: Artifacts) -> str:
    need(a, "score", a.scores or None, "scores/<source>/*.parquet")
    scores = a.scores
    panels = []
    for group, members in _grouped_sources(a, list(scores)):
        panels.append((group, [(s, scores[s].hist, scores[s].quantile(0.5), scores[s].scored) for s in members]))
    figure = plots.score_violins(panels, SCORE_BINS)
    rows = []
    for source, st in scores.items():
        rows.append([text_cell(source), text_cell(a.source_to_group.get(source, "—")), num(st.rows), num(st.scored),
                     num(st.unscored), num(st.quarantined), num(st.mean, "float"), num(st.quantile(0.1), "float"),
                     num(st.quantile(0.5), "float"), num(st.quantile(0.9), "float")])
    intro = ("<p>Aggregate score per record (trimmed mean of the unmasked anchor scores), one violin per "
             "source, grouped by group; the bar marks the median. <em>Unscored</em> records have every anchor "
             "of their source masked: their score is NaN, reported here and never silently zero.</p>")
    return intro + figure + table(["source", "group", "rows", "scored", "unscored", "quarantined", "mean",
                                   "p10", "median", "p90"], rows)


def retention(a: Artifacts) -> str:
    need(a, "select", a.summary, "selection/summary.json")
    summary = a.summary
    sources = selection_entries(summary, "sources")
    groups = group_selection(a)
    mode, budget = summary.get("mode"), summary.get("budget")
    shown = f"Selection <code>{esc(summary['name'])}</code> (see Selections). " if summary.get("name") else ""
    # The unit is select's decision (SelectionConfig.budget_unit), recorded in the summary.
    is_fraction = summary.get("budget_kind", "fraction of tokens") == "fraction of tokens"
    share = budget if is_fraction else summary.get("budget_share")
    label = summary.get("budget_label") or (fmt_pct(budget) if is_fraction else fmt_int(budget))
    head = (f"<p>{shown}Mode <code>{esc(mode or '?')}</code>, method <code>{esc(summary.get('method') or '?')}</code>, "
            f"budget {esc(label)}"
            f", ranked by <code>{esc(summary.get('key') or 'score')}</code>. Retained share = kept / in, for records "
            "and for tokens.</p>")
    ordered = [s for s in a.sources if s in sources] + [s for s in sources if s not in a.sources]
    bars = [(s, _group_index(a, sources[s].get("group") or a.source_to_group.get(s)),
             ratio(sources[s]["tokens_kept"], sources[s]["tokens_in"]), ratio(sources[s]["kept"],
                                                                               sources[s]["records_in"]))
            for s in ordered]
    figure = plots.retention_bars(bars, share if isinstance(share, (int, float)) else None) if bars else ""
    rows = [_retention_row(s, sources[s], f'group {sources[s].get("group") or a.source_to_group.get(s, "—")}')
            for s in ordered]
    group_rows = [_retention_row(g, c, f"{len(_members(a, g, a.sources))} sources", threshold=True)
                  for g, c in groups.items()]
    bad = [s for s, c in sources.items() if c["adds_up"] is False] + [g for g, c in groups.items()
                                                                        if c.get("adds_up") is False]
    separate = any(c.get("unscored_separate") and c.get("unscored") for c in sources.values())
    rule = ("in = kept + rejected + quarantined + unscored" if separate else
            "in = kept + rejected + quarantined (unscored records, every anchor masked, are counted as rejected)")
    check = (note(f"<strong>Counts do not add up</strong> for: {esc(', '.join(bad))} (expected {esc(rule)}).",
                  "bad") if bad else
             note(f"<strong>Counts add up</strong> for all {len(sources)} sources and {len(groups)} groups: "
                  f"{esc(rule)}. Hover a ✓ for the sum.", "ok"))
    headers = ["records in", "kept (share)", "rejected", "quarantined", "unscored", "tokens in",
               "tokens kept (share)", "adds up"]
    return (head + check + figure + "<h3>Per source</h3>" + table(["source"] + headers, rows)
            + "<h3>Per group</h3>" + table(["group"] + headers + ["cutoff"], group_rows))


def _retention_row(name: str, c: dict[str, Any], second: str, threshold: bool = False) -> list[Cell]:
    adds = c.get("adds_up")
    if "adds_up" not in c:  # group counts summed from sources
        total = sum(c.get(k) or 0 for k in ("kept", "rejected", "quarantined", "unscored"))
        adds = total == c.get("records_in") or total - (c.get("unscored") or 0) == c.get("records_in")
    equation = (f"{fmt_int(c.get('records_in'))} = {fmt_int(c.get('kept'))} + {fmt_int(c.get('rejected'))} + "
                f"{fmt_int(c.get('quarantined'))}" + (f" + {fmt_int(c.get('unscored'))}"
                                                      if c.get("unscored_separate", True) else ""))
    row = [Cell(f'{esc(name)}<div class="sub muted">{esc(second)}</div>', name), num(c.get("records_in")),
           _with_share(fmt_int(c.get("kept")), ratio(c.get("kept"), c.get("records_in"))),
           num(c.get("rejected")), num(c.get("quarantined")), num(c.get("unscored")),
           num(c.get("tokens_in"), "compact"),
           _with_share(fmt_compact(c.get("tokens_kept")), ratio(c.get("tokens_kept"), c.get("tokens_in"))),
           Cell("✓" if adds else ("?" if adds is None else "✗"), int(bool(adds)), "ok" if adds else "bad",
                equation)]
    if threshold:
        row.append(num(c.get("threshold"), "float"))
    return row


def _with_share(shown: str, share: float) -> Cell:
    """A count with its share in muted text; the column sorts by the share."""
    return Cell(f'{esc(shown)} <span class="muted">({esc(fmt_pct(share, 0))})</span>',
                None if share != share else share, "num")


def reliability(a: Artifacts) -> str:
    need(a, "distill", any(a.metrics(g) for g in a.group_ids), "students/<group>/metrics.json")
    parts = []
    for group in a.group_ids:
        metrics, mask = a.metrics(group), a.mask(group) or {}
        if not metrics:
            parts.append(f"<h3>{esc(group)}</h3>" + note("No student metrics for this group.", "missing"))
            continue
        names = a.anchor_names(group)
        anchors = metrics.get("anchors") or sorted({k for c in metrics.get("cells", {}).values() for k in c})
        ceiling = metrics.get("teacher_consistency") or {}
        parts.append(
            f"<h3>{group_heading(a, group)}</h3>"
            f'<p>Student <code>{esc(metrics.get("student"))}</code>, regressor <code>{esc(metrics.get("regressor"))}'
            f'</code>{_candidates(metrics)}; mean Spearman {fmt_float(metrics.get("mean_spearman"))}. '
            'Teacher self-consistency ceiling '
            f'(same records scored twice): MAE {fmt_float(ceiling.get("mae"))}, Spearman '
            f'{fmt_float(ceiling.get("spearman"))}, n {fmt_int(ceiling.get("n"))}. Cells show '
            "<b>Spearman</b> / MAE / n; struck-through cells are masked (hover for the reason).</p>")
        headers = ["source"] + [Cell(f"{esc(x)}<small>{esc(names.get(x, ''))}</small>") for x in anchors]
        rows = []
        cells = metrics.get("cells") or {}
        for source in sorted(cells, key=lambda s: (s == "*", s)):
            row = [text_cell("all sources (*)" if source == "*" else source)]
            for anchor in anchors:
                masked = (mask.get("cells") or {}).get(source, {}).get(anchor)
                row.append(_metric_cell(cells[source].get(anchor), masked))
            rows.append(row)
        overall = metrics.get("overall") or {}
        foot = [Cell("<strong>overall</strong>")] + [_metric_cell(overall.get(x), None) for x in anchors]
        parts.append(table(headers, rows, cls="reliability", foot=foot))
    return "".join(parts)


def _candidates(metrics: dict[str, Any]) -> str:
    """The regressors distill compared on validation data, so the choice is visible."""
    candidates = metrics.get("candidates") or {}
    shown = [f"{esc(name)} ρ {fmt_float(c.get('mean_spearman'))}" for name, c in candidates.items()
             if isinstance(c, dict)]
    return f" (chosen from: {', '.join(shown)})" if len(shown) > 1 else ""


def _metric_cell(metric: dict[str, Any] | None, cell: dict[str, Any] | None) -> Cell:
    if not metric:
        return Cell("—", None, "num muted")
    rho = metric.get("spearman")
    body = (f'<b>{fmt_float(rho)}</b><span class="sub">{fmt_float(metric.get("mae"))} · '
            f'n {fmt_int(metric.get("n"))}</span>')
    masked = bool(cell and cell.get("masked"))
    heat = "" if rho is None or (isinstance(rho, float) and math.isnan(rho)) else \
        f" heat{min(4, max(0, int(float(rho) * 5)))}"
    title = f"masked: {cell.get('reason') or 'no reason given'}" if masked else None
    return Cell(body, rho if rho is not None else -2, "num metric" + (" masked" if masked else heat), title)


def length_dependence(a: Artifacts) -> str:
    need(a, "score", a.scores or None, "scores/<source>/*.parquet")
    scores = a.scores
    thresholds = {}
    if a.summary:
        for group, counts in group_selection(a).items():
            if isinstance(counts.get("threshold"), (int, float)):
                thresholds[group] = float(counts["threshold"])
    panels, rows = [], []
    for group, members in _grouped_sources(a, list(scores)):
        tokens = np.concatenate([scores[s].sample_tokens for s in members])
        values = np.concatenate([scores[s].sample_scores for s in members])
        rho = spearman(tokens, values)
        title = f"{group} · {a.group_label(group).split(':')[0]}" if a.group_label(group) != group else group
        if group in thresholds:
            thresholds[title] = thresholds[group]
        panels.append((title, _group_index(a, group),
                       [(s, scores[s].sample_tokens, scores[s].sample_scores) for s in members], rho))
        verdict = ("weak" if abs(rho) < 0.3 else "moderate" if abs(rho) < 0.6 else "strong") if rho == rho else "—"
        rows.append([Cell(f"<strong>{esc(group)}</strong>", group), text_cell(a.group_label(group), wrap=True),
                     num(len(tokens)), num(rho, "float"),
                     Cell(badge(verdict, "ok" if verdict == "weak" else "warn"), abs(rho) if rho == rho else -1)])
        for source in members:
            st = scores[source]
            r = spearman(st.sample_tokens, st.sample_scores)
            rows.append([Cell(f'<span class="indent">{esc(source)}</span>', f"{group} {source}"), Cell(""),
                         num(len(st.sample_tokens)), num(r, "float"), Cell("")])
    intro = ("<p>Does selection depend on length? Perplexity and n-gram filters collapse on long records; a "
             "rubric score should not simply track length. Points are a seeded sample of up to "
             f"{fmt_int(1500)} scored records per source; the dotted line is the group's selection threshold. "
             "ρ is Spearman's rank correlation of tokens and score.</p>")
    return intro + plots.length_scatter(panels, thresholds) + table(
        ["group / source", "label", "sampled", "Spearman ρ", "dependence"], rows)


