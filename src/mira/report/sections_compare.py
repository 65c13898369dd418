"""Report sections about several selections: the named selections of the run, and `mira compare`."""

from __future__ import annotations

import base64
import math
from typing import Any

from mira.report.artifacts import Artifacts, NotRun
from mira.report.html import (
    Cell,
    badge,
    details,
    esc,
    fmt_compact,
    fmt_float,
    fmt_int,
    fmt_pct,
    note,
    num,
    table,
    text_cell,
)
from mira.report.sections_replicates import replicates


def selections(a: Artifacts) -> str:
    """Every named selection of the run; the one the other sections explain is marked."""
    found = a.selections
    if not found:
        if a.summary:
            return note("This run keeps one selection in <code>selection/</code> (written before selections had "
                        "names); <code>mira select</code> writes named ones beside it.")
        raise NotRun("select")
    shown = a.selection_path.name if a.selection_path else None
    rows = []
    for s in found:
        totals = s.get("totals") or {}
        budget = s.get("budget")
        mark = " " + badge("shown in this report", "ok") if s["name"] == shown else ""
        rows.append([Cell(f"<code>{esc(s['name'])}</code>{mark}", s["name"]), text_cell(s.get("method")),
                     text_cell(s.get("mode")), _budget_cell(budget), num(totals.get("kept")),
                     num(totals.get("kept_tokens"), "compact"),
                     num(_share(totals.get("kept_tokens"), totals.get("tokens_in")), "pct")])
    intro = ("<p>Each selection lives in <code>selection/&lt;name&gt;/</code> with its own <code>summary.json</code> "
             "and per-record decisions (<code>_decisions/</code>); making one never touches another. The other "
             "sections explain the selection the last <code>mira select</code> wrote.</p>")
    return intro + table(["selection", "method", "mode", "budget", "kept records", "kept tokens", "token share"], rows)


def comparison(a: Artifacts) -> str:
    c = a.comparison
    if not c:
        raise NotRun("compare")
    # compare.ablate's selections have a section of their own, not a column in every table.
    names = [m["name"] for m in c.get("methods", []) if not m.get("ablation_of")]
    random_name = next((m["name"] for m in c.get("methods", []) if m.get("method") == "random"), None)
    overlap = c.get("overlap") or {}
    current = {s["name"]: s for s in a.selections}
    stale = [m["name"] for m in c.get("methods", [])
             if m["name"] not in current or _fingerprint(a, m["name"]) != m.get("fingerprint")]
    parts = [note(f"<strong>Out of date:</strong> {esc(', '.join(stale))} changed or disappeared since this "
                  "comparison; rerun <code>mira compare</code>.", "bad")] if stale else []
    parts += [f"<p>{len(names)} selections at budget {esc(_budget_text(c.get('budget')))}, built from the same scores "
             "(nothing was rescored). Token shares count tokens; a good method keeps the known-good and drops the "
             "known-bad records while keeping each source's mixture sensible.</p>"]
    costs = c.get("teacher_cost") or {}
    parts.append(table(["selection", "kept tokens", "length ratio (mean)", "overlap with random",
                        "known-good kept", "known-bad kept", "teacher requests", "prompt tokens", "output tokens",
                        "teacher seconds"],
                       [[Cell(f"<code>{esc(n)}</code>", n),
                         num(c["retention"][n]["totals"]["token_share"], "pct"),
                         num(c["length_bias"][n].get("mean_ratio"), "float"),
                         num(_matrix(overlap, n, random_name), "pct"),
                         num(((c.get("known_good") or {}).get("methods") or {}).get(n, {}).get("record_share"), "pct"),
                         num(((c.get("known_bad") or {}).get("methods") or {}).get(n, {}).get("record_share"), "pct"),
                         *_cost_cells(costs.get(n))]
                        for n in names]))
    parts.append(_cost_note(costs, c.get("dataman_budget")))
    parts.append("<h3>Retention per source and group (share of tokens kept)</h3>")
    for level in ("sources", "groups"):
        keys = sorted({k for n in names for k in c["retention"][n][level]})
        rows = [[text_cell(k)] + [num(c["retention"][n][level].get(k, {}).get("token_share"), "pct") for n in names]
                for k in keys]
        parts.append(table([level[:-1]] + names, rows))
    parts.append("<h3>Overlap</h3><p>Share of the row selection's kept tokens that the column selection kept too. "
                 "Two independent random selections at a budget fraction <em>f</em> share about <em>f</em>.</p>")
    parts.append(_matrix_table(overlap, names, "pct"))
    parts.append("<h3>Length bias</h3><p>Token length of kept records against all usable input records; a ratio "
                 "above 1 prefers long records (perplexity and n-gram filters are known to break on length).</p>")
    parts.append(table(["selection", "input mean", "kept mean", "mean ratio", "input median", "kept median",
                        "median ratio"],
                       [[text_cell(n)] + [num(c["length_bias"][n].get(k), "float" if "ratio" in k else "int")
                                          for k in ("input_mean", "kept_mean", "mean_ratio", "input_median",
                                                    "kept_median", "median_ratio")] for n in names]))
    parts.append("<h3>Rank agreement</h3><p>Spearman correlation of two methods' ranking keys over the records "
                 "both ranked (hover for the count). MIRA's modes share one key: they differ only in cutoffs.</p>")
    parts.append(_matrix_table(c.get("rank_agreement") or {}, names, "float", counts=True))
    for kind in ("known_good", "known_bad"):
        parts.append(_known(c.get(kind), kind.split("_")[1], names))
    if c.get("proxy"):
        parts.append(_overlap((c.get("eval_overlap") or {}).get("sets") or {}))
        parts.append(_proxy(a, c["proxy"], names, c.get("retention") or {}))
    else:
        parts.append(note("Proxy training is off: <code>mira compare CONFIG --set compare.proxy.enabled=true</code> "
                          "trains a small model on each selection and compares held-out bits per byte."))
    parts.append(replicates(c))
    parts.append(_ablations(a, c))
    return "".join(parts)


def _known(entry: dict[str, Any] | None, label: str, names: list[str]) -> str:
    if not entry:
        return ""
    what = (f"records with field <code>{esc(entry['field'])}</code> set" if "field" in entry
            else f"{fmt_int(entry.get('ids'))} listed ids ({fmt_int(entry.get('missing'))} not found)")
    rows = [[text_cell(n), num(m.get("kept")), num(m.get("record_share"), "pct"), num(m.get("token_share"), "pct"),
             num(m.get("overall_token_share"), "pct")] for n, m in entry.get("methods", {}).items() if n in names]
    warning = note(f"<strong>{esc(entry['note'])}</strong>", "bad") if entry.get("note") else ""
    return (f"<h3>Known-{esc(label)} records</h3>{warning}<p>{fmt_int(entry.get('records'))} {what}. Compare the "
            "kept share with the method's overall token share: a method that cannot tell them apart keeps about "
            "that much.</p>"
            + table(["selection", "kept", "kept share", "kept token share", "overall token share"], rows))


def _proxy(a: Artifacts, proxy: dict[str, Any], names: list[str], retention: dict[str, Any]) -> str:
    table_data = proxy.get("table") or {}
    evals = list(proxy.get("eval_sets") or {})
    settings = proxy.get("settings") or {}
    rows = []
    for n in names:
        if n not in table_data:
            continue
        cells: list[Cell | str] = [text_cell(n)]
        for e in evals:
            bpb = table_data[n][e]["bpb"]
            spread = "" if bpb.get("std") is None else f" ± {fmt_float(bpb['std'], 4)}"
            cells.append(Cell(f"{fmt_float(bpb['mean'], 4)}{esc(spread)}", bpb["mean"], "num",
                              ", ".join(fmt_float(v, 4) for v in bpb.get("values", []))))
        rows.append(cells)
    out = [f"<h3>Proxy training</h3><p>A {fmt_int(settings.get('layers'))}-layer byte-level model trained from "
           f"scratch on {fmt_compact(settings.get('train_bytes'))} bytes of each selection, "
           f"{fmt_int(settings.get('seeds'))} seeds; "
           "held-out bits per byte, mean ± standard deviation over seeds (lower is better; hover for each seed). "
           f"{fmt_int(proxy.get('trained'))} runs trained now, {fmt_int(proxy.get('reused'))} reused"
           f"{_shared_text(proxy)}.</p>",
           table(["selection"] + evals, rows)]
    twins = proxy.get("identical") or {}
    if twins:
        pairs = ", ".join(f"{esc(n)} = {esc(t)}" for n, t in twins.items())
        out.append(note(f"<strong>Identical selections:</strong> {pairs} keep exactly the same records, so their "
                        "proxy results are the same runs (a method whose every cell is masked falls back to "
                        "the source-preserving random share).", "warn"))
    plot = a.run.path(proxy.get("plot") or "compare/proxy.png")
    if plot.exists():
        data = base64.b64encode(plot.read_bytes()).decode()
        out.append(f'<figure><img alt="proxy bits per byte per selection" src="data:image/png;base64,{data}">'
                   "</figure>")
    verdicts = proxy.get("verdicts") or []

    def rows_of(items: list[dict[str, Any]]) -> list[list[Cell | str]]:
        return [[text_cell(v["a"]), text_cell(v["b"]), text_cell(v["eval_set"]), _per_source(retention, v["a"]),
                 num(v.get("diff"), "float", 4),
                 _interval(v), num(v.get("p"), "float", 3), num(v.get("p_holm"), "float", 3),
                 num(v.get("wilcoxon_p"), "float", 3), num(v.get("seeds_needed")),
                 Cell(badge("beyond noise", "ok") if v.get("beyond_noise") else badge("within noise"),
                      int(bool(v.get("beyond_noise")))),
                 text_cell(v.get("better") or "—"), text_cell(v.get("text"), wrap=True)] for v in items]

    headers = ["a", "b", "eval set", "a: kept per source", "a − b (bpb)", "95% CI", "p", "Holm p", "Wilcoxon p",
               "seeds for 80% power", "verdict", "better", "detail"]
    family = [v for v in verdicts if v.get("vs_random") and v["a"] in names]
    size = next((v.get("family") for v in family if v.get("family")), None)
    out.append("<h4>Each selection against source-preserving random</h4><p>Seed <em>k</em> of every selection "
               "starts from the same weights and sees batches in the same order, so the test is on the per-seed "
               "differences (paired t; Wilcoxon's signed-rank test as a check from 6 seeds). The interval is "
               "that of the mean difference. "
               + (f"The {fmt_int(size)} tests against random are one family, Holm-corrected: the verdict "
                  "reads the Holm p. " if size else "")
               + "Seeds for 80% power: how many seeds a true difference of the observed size would need to be "
                 "called four times in five; far more than were run means this comparison cannot resolve it.</p>"
               + table(headers, rows_of(family)))
    others = [v for v in verdicts if not v.get("vs_random") and v["a"] in names and v["b"] in names]
    if others:
        out.append(details("Every other pair (plain p, not corrected)", table(headers, rows_of(others))))
    return "".join(out)


def _overlap(sets: dict[str, Any]) -> str:
    """Eval sets held out only in part: their records that duplicate corpus records, by kind."""
    flagged = {name: e for name, e in sets.items() if e.get("overlapping")}
    if not flagged:
        return ""
    items = "; ".join(f"<code>{esc(name)}</code>: {fmt_int(e['overlapping'])} of {fmt_int(e['records'])} "
                      f"({fmt_int(e['exact'])} exact, {fmt_int(e['normalised'])} up to whitespace and case, "
                      f"{fmt_int(e['near'])} near-duplicates)" for name, e in flagged.items())
    return note(f"<strong>Eval records duplicate corpus records:</strong> {items}. A proxy evaluated on text it "
                "may have trained on favours the selections that kept it; compare refuses a set above 10%.", "warn")


def _cost_cells(cost: dict[str, Any] | None) -> list[Cell]:
    cost = cost or {}
    requests = num(cost.get("requests"))
    if cost.get("cache_hits"):
        requests.title = f"{fmt_int(cost['cache_hits'])} of them answered from the teacher cache"
    return [requests, num(cost.get("prompt_tokens"), "compact"), num(cost.get("completion_tokens"), "compact"),
            num(cost.get("seconds"), "int")]


def _cost_note(costs: dict[str, Any], budget: dict[str, Any] | None) -> str:
    if not costs:
        return ""
    text = ("Teacher cost: MIRA's selections rest on the discover and annotate stages' answers, DataMan's on its "
            "own labels; the other methods ask no teacher. Requests are the last pass's; tokens and seconds (request "
            "latencies summed) are what this run sent over every pass, so answers from the teacher cache are free "
            "here (hover a request count for how many).")
    if budget:
        text += (f" <code>compare.dataman_budget: match_mira</code>: DataMan labelled {fmt_int(budget['records'])} "
                 f"records, about {fmt_int(budget['estimated_tokens'])} teacher tokens against annotate's "
                 f"{fmt_int(budget['annotate_tokens'])}.")
    return f"<p>{text}</p>"


def _per_source(retention: dict[str, Any], name: str) -> Cell:
    """The range of a selection's kept share per source (hover: every source): beside a verdict, it
    says whether the method ranked within sources or also moved the mixture."""
    sources = (retention.get(name) or {}).get("sources") or {}
    shares = {s: e["token_share"] for s, e in sources.items() if e.get("token_share") is not None}
    if not shares:
        return Cell("—", None, "num")
    low, high = min(shares.values()), max(shares.values())
    return Cell(f"{fmt_pct(low)} – {fmt_pct(high)}", high - low, "num",
                ", ".join(f"{s} {fmt_pct(v)}" for s, v in shares.items()))


def _interval(v: dict[str, Any]) -> Cell:
    low, high = v.get("low"), v.get("high")
    if low is None or high is None:
        return Cell("—", None, "num")
    return Cell(f"{low:+.4f} … {high:+.4f}", low, "num")


def _ablations(a: Artifacts, c: dict[str, Any]) -> str:
    """compare.ablate: each selection without one cell (or source) against the selection it comes from."""
    ablations = [m for m in c.get("methods", []) if m.get("ablation_of")]
    if not ablations:
        return ""
    proxy = c.get("proxy") or {}
    evals = list(proxy.get("eval_sets") or {})
    verdicts = {(v["a"], v["b"], v["eval_set"]): v for v in proxy.get("verdicts") or []}
    groups = c.get("source_groups") or {}
    bad = (c.get("known_bad") or {}).get("methods") or {}
    rows = []
    for m in ablations:
        cells: list[Cell | str] = [Cell(", ".join(esc(_cell_label(a, groups, e)) for e in m["exclude"]), m["name"],
                                        title=m["name"]),
                                   text_cell(m["ablation_of"]),
                                   num(_matrix(c.get("overlap") or {}, m["name"], m["ablation_of"]), "pct"),
                                   num(bad.get(m["name"], {}).get("record_share"), "pct")]
        for e in evals:
            v = verdicts.get((m["name"], m["ablation_of"], e)) or {}
            if not v:  # its base is not among the compared selections (an entry naming its own cells)
                cells += [num(None), text_cell("— (its base was not compared)")]
                continue
            reading = ("the cell hurt: better without it" if v.get("better") == m["name"]
                       else "the cell helped" if v.get("better") else "no effect beyond seed noise")
            cells += [num(v.get("diff"), "float", 4),
                      Cell(badge(reading, "bad" if v.get("better") == m["name"] else "ok" if v.get("better") else ""),
                           v.get("p") if v.get("p") is not None else 1.0, title=v.get("text"))]
        rows.append(cells)
    headers = ["without", "ablation of", "overlap with it", "known-bad kept"] + [
        h for e in evals for h in (f"{e}: without − with (bpb)", f"{e}: reading")]
    off = "" if evals else " Proxy training is off, so only the selections are compared here."
    return ("<h3>Ablations</h3><p><code>compare.ablate</code>: the selection made again without one cell "
            "(source, anchor) or one source's cells at a time, each judged against the selection it was taken from "
            "on the same seeds (lower bits per byte is better). A cell that trains a better proxy when left out "
            "hurt the selection: mask it with <code>reliability.exclude</code> and check again. The reliability "
            "mask only says a student agrees with its teacher; this says whether ranking by it selects better "
            f"data.{off}</p>" + table(headers, rows) + _suggestion(c.get("suggestion")))


def _suggestion(suggestion: dict[str, Any] | None) -> str:
    if not suggestion:
        return ""
    from mira.evaluation.ablation import suggestion_text

    kind = "bad" if suggestion["exclude"] else "ok"
    return (f"<p>{badge('suggested' if suggestion['exclude'] else 'nothing to exclude', kind)} "
            f"{esc(suggestion_text(suggestion))}. Each ablation is tested on every eval set, so the tests are "
            "corrected as one family (a lucky seed draw among many tests is likely), and a cell is suggested only "
            "when no eval set is worse without it.</p>")


def _cell_label(a: Artifacts, groups: dict[str, Any], entry: str) -> str:
    source, anchor = entry.split("/", 1)
    group = groups.get(source)
    name = a.anchor_names(group).get(anchor) if group and anchor != "*" else None
    return f"{source} / {anchor}" + (f" ({name})" if name else " (every anchor)" if anchor == "*" else "")


def _shared_text(proxy: dict[str, Any]) -> str:
    shared = proxy.get("shared")
    return f", {fmt_int(shared)} shared with an identical selection" if shared else ""


def _fingerprint(a: Artifacts, name: str) -> str | None:
    from mira.artifacts.selection import read_selection_summary
    from mira.selection.named import selection_dir

    summary = read_selection_summary(selection_dir(a.run, name))
    return summary.fingerprint if summary else None


def _matrix(block: dict[str, Any], row: str, column: str | None) -> float | None:
    methods = block.get("methods") or []
    if column is None or row not in methods or column not in methods:
        return None
    return block["matrix"][methods.index(row)][methods.index(column)]


def _matrix_table(block: dict[str, Any], names: list[str], kind: str, counts: bool = False) -> str:
    methods = block.get("methods") or []
    rows = []
    for n in names:
        if n not in methods:
            continue
        i = methods.index(n)
        cells: list[Cell | str] = [text_cell(n)]
        for j, _ in enumerate(methods):
            value = block["matrix"][i][j]
            cell = num(value, kind)
            if counts:
                cell.title = f"{fmt_int(block['records'][i][j])} records ranked by both"
            cells.append(cell)
        rows.append(cells)
    return table([""] + methods, rows, sortable=False)


def _share(part: Any, whole: Any) -> float | None:
    return part / whole if isinstance(part, (int, float)) and isinstance(whole, (int, float)) and whole else None


def _budget_text(budget: Any) -> str:
    if not isinstance(budget, (int, float)) or (isinstance(budget, float) and math.isnan(budget)):
        return "?"
    return fmt_pct(budget) + " of tokens" if budget <= 1 else f"{fmt_int(budget)} tokens"


def _budget_cell(budget: Any) -> Cell:
    return Cell(esc(_budget_text(budget)), budget if isinstance(budget, (int, float)) else None, "num")
