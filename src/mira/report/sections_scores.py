"""Report sections about scores and selection: distributions, retention, reliability, length."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from mira.core.stats import spearman
from mira.report import plots
from mira.report.artifacts import SCORE_BINS, Artifacts, aggregate_warnings, need, selection_entries
from mira.report.html import (
    Cell,
    badge,
    esc,
    fmt_compact,
    fmt_float,
    fmt_int,
    fmt_pct,
    note,
    num,
    ratio,
    table,
    text_cell,
)
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
    how = "trimmed mean" if a.reliability.aggregate == "trimmed_mean" else "reliability-weighted mean"
    scale = (", each anchor first put on its group's common mean and spread: reliability.anchor_scale group"
             if a.reliability.anchor_scale == "group" else "")
    intro = (f"<p>Aggregate score per record ({how} of the unmasked anchor scores{scale}), one violin per "
             "source, grouped by group; the bar marks the median. <em>Unscored</em> records have every anchor "
             "of their source masked: their score is NaN, reported here and never silently zero.</p>")
    warnings = []
    for group, members in _grouped_sources(a, list(scores)):
        found = aggregate_warnings(np.concatenate([scores[s].sample_scores for s in members]),
                                   np.concatenate([scores[s].sample_tokens for s in members]))
        warnings += [note(f"<strong>Group {group_heading(a, group)}:</strong> {esc(w)}.", "warn") for w in found]
    return intro + "".join(warnings) + figure + table(["source", "group", "rows", "scored", "unscored", "quarantined",
                                                       "mean", "p10", "median", "p90"], rows)


def retention(a: Artifacts) -> str:
    summary = need(a, "select", a.summary, "selection/summary.json")
    sources = selection_entries(summary, "sources")
    groups = group_selection(a)
    mode, budget = summary.mode, summary.budget
    shown = f"Selection <code>{esc(summary.name)}</code> (see Selections). " if summary.name else ""
    # The unit is select's decision (SelectionConfig.budget_unit), recorded in the summary.
    is_fraction = summary.budget_kind == "fraction of tokens"
    share = budget if is_fraction else summary.budget_share
    label = summary.budget_label or (fmt_pct(budget) if is_fraction else fmt_int(budget))
    head = (f"<p>{shown}Mode <code>{esc(mode)}</code>, method <code>{esc(summary.method)}</code>, "
            f"budget {esc(label)}"
            f", ranked by <code>{esc(summary.key)}</code>. Retained share = kept / in, for records "
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
    rule = ("in = kept + rejected + quarantined (unscored records, every anchor masked, are counted as rejected, "
            "or as kept in their random share)")
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
        adds = sum(c.get(k) or 0 for k in ("kept", "rejected", "quarantined")) == c.get("records_in")
    equation = (f"{fmt_int(c.get('records_in'))} = {fmt_int(c.get('kept'))} + {fmt_int(c.get('rejected'))} + "
                f"{fmt_int(c.get('quarantined'))}")
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
        needed = _needed_rows(mask)
        parts.append(
            f"<h3>{group_heading(a, group)}</h3>"
            f'<p>Student <code>{esc(metrics.get("student"))}</code>, regressor <code>{esc(metrics.get("regressor"))}'
            f'</code>{_candidates(metrics)}{_why(metrics)}; mean Spearman {fmt_float(metrics.get("mean_spearman"))}. '
            'Teacher self-consistency ceiling '
            f'(same records scored twice): MAE {fmt_float(ceiling.get("mae"))}, Spearman '
            f'{fmt_float(ceiling.get("spearman"))}, n {fmt_int(ceiling.get("n"))}. Cells show '
            f"<b>Spearman</b> / MAE / n on {esc(_how_validated(metrics))}; struck-through cells are masked, "
            "<em>undecidable</em> cells had too few rows to judge (hover for the reason). "
            f"A cell needs at least {fmt_int(needed)} validation rows to be judged at all.</p>"
            + _aggregate_verdict(mask.get("aggregate")))
        headers = ["source"] + [Cell(f"{esc(x)}<small>{esc(names.get(x, ''))}</small>") for x in anchors]
        rows, statuses = [], []
        cells = metrics.get("cells") or {}
        mask_cells = mask.get("cells") or {}
        for source in sorted(cells, key=lambda s: (s == "*", s)):
            row = [text_cell("all sources (*)" if source == "*" else source)]
            for anchor in anchors:
                metric, cell = cells[source].get(anchor), mask_cells.get(source, {}).get(anchor)
                status = cell_status(cell, metric, needed)
                statuses.append(status)
                row.append(_metric_cell(metric, cell, status))
            rows.append(row)
        parts.append(_undecidable_note(statuses, needed))
        parts.append(label_spread(metrics.get("labels") or {}, names))
        group_cells = mask_cells.get("*")
        if group_cells:  # the mask's group cell: within-source statistics combined, never pooled
            foot = [Cell("<strong>group cell (*)</strong><div class='sub muted'>within-source, combined</div>")] + [
                _metric_cell(group_cells.get(x), group_cells.get(x), cell_status(group_cells.get(x), None, needed))
                for x in anchors]
        else:
            overall = metrics.get("overall") or {}
            foot = [Cell("<strong>pooled</strong><div class='sub muted'>across sources; not a reliability "
                         "test</div>")] + [_metric_cell(overall.get(x), None, "pooled") for x in anchors]
        parts.append(table(headers, rows, cls="reliability", foot=foot))
    return "".join(parts)


# Below these the labels themselves limit the student: a target that is nearly constant has no
# ranking to learn, and a fallback to the sampled integer is coarser than the teacher's expectation.
# A small spread alone is not that: expectations with a std of 0.2-0.3 around the teacher's
# favourite score can still rank records consistently (re-scored records keep their ranks).
LOW_LABEL_STD = 0.1
LOW_EXACT_SHARE = 0.9


def label_spread(stats: dict[str, dict[str, Any]], names: dict[str, str]) -> str:
    """One line per group on the teacher's targets (std, most common answer, exact share), with a
    warning where they limit what any student could learn."""
    if not stats:
        return ""
    items, flat, fallback = [], [], []
    for anchor, st in stats.items():
        label = f"{anchor} {names.get(anchor, '')}".strip()
        items.append(f"<b>{esc(label)}</b>: std {fmt_float(st.get('std'))}, most common answer "
                     f"{fmt_pct(st.get('modal_share'), 0)}, exact expectations {fmt_pct(st.get('exact_share'), 0)}"
                     f" (n {fmt_int(st.get('n'))})")
        if st.get("std") is not None and st["std"] < LOW_LABEL_STD:
            flat.append(label)
        if st.get("exact_share") is not None and st["exact_share"] < LOW_EXACT_SHARE:
            fallback.append(f"{label} ({fmt_pct(1 - st['exact_share'], 0)})")
    out = "<p><strong>Teacher labels</strong> (training targets, 0-10): " + "; ".join(items) + ".</p>"
    if flat:
        out += note(f"The teacher's targets are nearly constant on {esc(', '.join(flat))} (std below "
                    f"{LOW_LABEL_STD}): there is little ranking for a student to learn, whatever its validation "
                    "says.", "warn")
    if fallback:
        out += note("Targets that fell back to the sampled integer (no exact logprob expectation): "
                    f"{esc(', '.join(fallback))}. They are coarser and can be biased.", "warn")
    return out


def _how_validated(metrics: dict[str, Any]) -> str:
    """Where the cells' numbers come from, as distill measured them (older metrics: held-out rows)."""
    how = str(metrics.get("validation") or "held-out rows")
    return "held-out validation rows" if how == "held-out rows" else f"every label row, out of fold ({how})"


def _needed_rows(mask: dict[str, Any]) -> int:
    """Validation rows a cell needs before its rule can decide (older masks: their min_support)."""
    needed = mask.get("needed_rows") or (mask.get("thresholds") or {}).get("min_support") or 1
    return int(needed)


def cell_status(cell: dict[str, Any] | None, metric: dict[str, Any] | None, needed: int) -> str:
    """reliable | unreliable | undecidable | unknown for one mask cell.

    Never "reliable" on fewer rows than the rule needs: a cell judged on its own rows (basis
    ``source``) with n < `needed` is undecidable whatever an older mask file says.
    """
    if cell is None:
        return "unknown"
    n = int(cell.get("n") or (metric or {}).get("n") or 0)
    own = cell.get("basis", "source") == "source"
    status = cell.get("status") or ("unreliable" if cell.get("masked") else "reliable")
    if status == "reliable" and (cell.get("masked") or (own and n < needed)):
        return "undecidable" if n < needed else "unreliable"
    return status


def _undecidable_note(statuses: list[str], needed: int) -> str:
    judged = [s for s in statuses if s != "unknown"]
    undecidable = judged.count("undecidable")
    reliable = judged.count("reliable")
    if not undecidable:
        return note(f"{fmt_int(reliable)} of {fmt_int(len(judged))} cells are reliable; every cell had enough "
                    "validation rows to be judged.", "ok" if reliable else "warn")
    return note(f"<strong>{fmt_int(undecidable)} of {fmt_int(len(judged))} cells are undecidable for lack of "
                f"labels</strong>: fewer than {fmt_int(needed)} validation rows, on their own and in the group "
                "cell. They are masked, not called reliable; a source with every anchor masked is unscored "
                f"(selected at random or rejected, <code>selection.unscored</code>). {fmt_int(reliable)} cells "
                "are reliable. More labels per source (<code>annotation.records_per_group</code>) decide them.",
                "warn")


def _why(metrics: dict[str, Any]) -> str:
    choice = metrics.get("model_choice")
    return f", chosen by {esc(choice)}" if choice else ""


def _aggregate_verdict(agg: dict[str, Any] | None) -> str:
    """What decided the group: its aggregate (what select ranks by) against the teacher's, within sources."""
    if not agg:
        return ""
    status = agg.get("status") or "unknown"
    conf = agg.get("confirmation") or {}
    parts = [f"within-source Spearman <b>{fmt_float(agg.get('spearman'))}</b> out of fold "
             f"({fmt_int(agg.get('n_eff'))} rows within {fmt_int(agg.get('sources'))} source(s), lower bound "
             f"{fmt_float(agg.get('lower'))})",
             f"a length-only student {fmt_float(agg.get('length_spearman'))}"]
    if conf:
        parts.append(f"the final student on {fmt_int(conf.get('rows'))} labels set aside "
                     f"{fmt_float(conf.get('spearman'))} (with enough rows within sources, pooled into the bound)")
    verdict = badge(status, "ok" if status == "reliable" else "warn")
    reason = f" — {esc(agg['reason'])}" if agg.get("reason") else ""
    return (f"<p><strong>Group aggregate</strong> (what select ranks by) {verdict}: {'; '.join(parts)}{reason}. "
            "Below the per-source cell rows, this verdict decides every cell of the group.</p>")


def _candidates(metrics: dict[str, Any]) -> str:
    """The regressors distill compared (cross-validation inside the training rows)."""
    candidates = metrics.get("candidates") or {}
    shown = [f"{esc(name)} ρ {fmt_float(c.get('mean_spearman'))}" for name, c in candidates.items()
             if isinstance(c, dict)]
    return f" (chosen from: {', '.join(shown)})" if len(shown) > 1 else ""


def _metric_cell(metric: dict[str, Any] | None, cell: dict[str, Any] | None, status: str = "unknown") -> Cell:
    if not metric:
        return Cell("—", None, "num muted")
    rho = metric.get("spearman")
    via = ""
    if cell and cell is not metric and cell.get("basis") == "*":
        via = ' · via <span title="judged by the group cell">*</span>'
    elif cell and cell is not metric and cell.get("basis") == "aggregate":
        via = ' · via <span title="judged by the group\'s aggregate score, within sources">Σ</span>'

    tag = ' <span class="badge muted">undecidable</span>' if status == "undecidable" else ""
    body = (f'<b>{fmt_float(rho)}</b>{tag}<span class="sub">{fmt_float(metric.get("mae"))} · '
            f'n {fmt_int(metric.get("n"))}{via}</span>')
    masked = bool(cell and cell.get("masked")) or status in ("undecidable", "unreliable")
    heat = "" if rho is None or (isinstance(rho, float) and math.isnan(rho)) else \
        f" heat{min(4, max(0, int(float(rho) * 5)))}"
    reason = (cell or {}).get("reason") or ("undecidable for lack of labels" if status == "undecidable" else None)
    title = f"{status if status != 'unreliable' else 'masked'}: {reason or 'no reason given'}" if masked else None
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


