"""The report's view of `mira compare --replicates N`: MIRA per annotation draw and pooled."""

from __future__ import annotations

from typing import Any

from mira.report.html import Cell, badge, esc, fmt_int, num, table, text_cell


def replicates(c: dict[str, Any]) -> str:
    """Part of the Comparison section: each MIRA selection per draw (with each draw's teacher cost)
    and, with proxy training, the verdicts per draw and pooled over the draws."""
    block = c.get("replicates")
    if not block:
        return ""
    draws = block["draws"]
    rows = []
    for name in block["mira"]:
        entry = block["selections"][name]
        for row, draw in zip(entry["draws"], draws, strict=True):
            cost = draw.get("teacher_cost") or {}
            rows.append([Cell(f"<code>{esc(name)}</code>", name), text_cell(f"r{row['draw']}"),
                         num(draw.get("annotation_seed")), num(row["token_share"], "pct"),
                         num(row["length_ratio"], "float"), num(row["overlap_random"], "pct"),
                         num(row["overlap_first"], "pct"), num(row["rank_agreement_first"], "float"),
                         num(row["known_bad_kept"], "pct"), num(draw.get("labels")), num(cost.get("requests")),
                         num(cost.get("answered")), num(cost.get("prompt_tokens"), "compact"),
                         num(cost.get("seconds"), "int")])
    out = [f"<h3>Annotation draws</h3><p><code>compare.replicates: {fmt_int(block['count'])}</code>: MIRA's chain "
           "(annotate, distill, score, select) on each of "
           f"{fmt_int(block['count'])} annotation samples (draw <em>r</em> labels the sample of "
           "<code>annotation.seed + r</code>; r0 is this run's own labels, the others live in "
           "<code>compare/replicates/r&lt;r&gt;/</code> and share this run's groups, rubrics and teacher cache). "
           "A selection that moves a lot between draws (low overlap with r0) rests on which records the teacher "
           "happened to label. Teacher: each draw's annotate pass, requests asked and answers paid for (the rest "
           "came from the cache).</p>",
           table(["selection", "draw", "annotation.seed", "kept tokens", "length ratio", "overlap with random",
                  "overlap with r0", "rank agreement with r0", "known-bad kept", "labels", "teacher requests",
                  "paid for", "prompt tokens", "teacher seconds"], rows)]
    verdicts = block.get("verdicts") or []
    if verdicts:
        vrows = []
        for v in verdicts:
            pooled = v["pooled"]
            reading = ("better" if pooled.get("better") == v["a"] else "worse" if pooled.get("better")
                       else "within noise")
            low, high = pooled.get("low"), pooled.get("high")
            interval = Cell("—", None, "num") if low is None or high is None else Cell(
                f"{low:+.4f} … {high:+.4f}", low, "num")
            vrows.append([text_cell(v["a"]), text_cell(v["b"]), text_cell(v["eval_set"]),
                          *[Cell(_signed(d["diff"]), d["diff"], "num", _draw_title(d)) for d in v["draws"]],
                          Cell(_signed(pooled["diff"]), pooled["diff"], "num"), interval,
                          num(pooled.get("p"), "float", 3), num(pooled.get("p_holm"), "float", 3),
                          text_cell(f"{pooled['draws_better']} / {pooled['draws_worse']}"),
                          num(pooled.get("replicates_needed")),
                          Cell(badge(reading, "ok" if reading == "better" else "bad" if reading == "worse" else ""),
                               pooled.get("p") if pooled.get("p") is not None else 1.0, title=pooled.get("text"))])
        labels = [f"r{d['draw']}: a − b" for d in verdicts[0]["draws"]]
        out.append("<h4>Proxy verdicts over the draws</h4><p>Per draw: the paired difference in held-out bits per "
                   "byte averaged over the proxy seeds (random is built once: it does not depend on the draw). "
                   "Pooled: the mean of the draws' differences, with a t interval and p over the draws (the draw is "
                   "the unit: averaging per seed would drop the label-draw effect from the error, and counting every "
                   "(draw, seed) pair as independent would count it once per seed), Holm-corrected over every MIRA "
                   "selection and eval set. With 3 draws the interval is wide by design; <em>draws for 80% "
                   "power</em> says how many a difference this size needs.</p>"
                   + table(["a", "b", "eval set", *labels, "pooled a − b", "95% CI", "p", "Holm p",
                            "draws better / worse", "draws for 80% power", "verdict"], vrows))
    return "".join(out)


def _signed(value: float | None) -> str:
    return "—" if value is None else f"{value:+.4f}"


def _draw_title(draw: dict[str, Any]) -> str:
    low, high = draw.get("low"), draw.get("high")
    interval = "" if low is None or high is None else f"95% CI {low:+.4f}..{high:+.4f}, "
    p = draw.get("p")
    return f"{interval}p={p:.3g} (this draw alone, not corrected)" if p is not None else "one draw"
