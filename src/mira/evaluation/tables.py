"""The comparison as text tables, for `mira compare` to print (library code returns lines; the CLI prints).

One table of the selections (kept tokens and the range of its per-source shares, length bias, overlap
with random, known-bad records kept, teacher cost), each selection's kept share per source, then one
table of the proxy verdicts against source-preserving random: the paired difference per eval set
with its 95% interval, the Holm-corrected p, the seeds a difference that size would need, and the
per-source range beside the verdict (a method that moves the mixture can win by moving it).
"""

from __future__ import annotations

from typing import Any

from mira.evaluation.ablation import suggestion_text

Line = tuple[str, str | None]  # (text, colour or None)


def summary_lines(result: dict[str, Any]) -> list[Line]:
    """Every line `mira compare` prints about `result` (a ``compare/summary.json``)."""
    lines = selection_table(result)
    for method in result["methods"]:
        if method.get("instead_of"):
            lines.append((f"  note: {method['name']}: other settings than selection/{method['instead_of']}, which "
                          f"compare did not build; selection/{method['instead_of']} is kept", "yellow"))
    lines += source_lines(result)
    lines += overlap_lines(result)
    lines += verdict_table(result)
    ablation_of = {m["name"]: m.get("ablation_of") for m in result["methods"]}
    for verdict in (result.get("proxy") or {}).get("verdicts", []):  # compare.ablate: against the base
        if ablation_of.get(verdict["a"]) == verdict["b"]:
            lines.append((f"  ablation [{verdict['eval_set']}] {verdict['text']}", None))
    suggestion = result.get("suggestion")
    if suggestion:
        lines.append((f"  {suggestion_text(suggestion)}", None))
    return lines + replicate_lines(result)


def replicate_lines(result: dict[str, Any]) -> list[Line]:
    """compare.replicates > 1: each MIRA selection per annotation draw and pooled, with each draw's
    annotate cost; with proxy training, the verdicts per draw and pooled (mira.evaluation.replicates)."""
    block = result.get("replicates")
    if not block:
        return []
    draws = block["draws"]
    seeds = ", ".join(str(d["annotation_seed"]) for d in draws)
    width = max([20] + [len(n) for n in block["mira"]])
    lines: list[Line] = [
        (f"annotation draws: {block['count']} (annotation.seed {seeds}; r0 is the run's own labels, the others "
         "are in compare/replicates/)", None),
        (f"{'selection':<{width}} {'draw':>6} {'kept tokens':>11} {'per source':>11} {'length x':>8} "
         f"{'overlap w/ random':>17} {'overlap w/ r0':>13} {'rank w/ r0':>10} {'known-bad kept':>14}  "
         f"{'teacher: requests':>17} {'new':>6} {'tokens in/out':>13} {'seconds':>8}", None)]
    for name in block["mira"]:
        entry = block["selections"][name]
        for row, draw in zip(entry["draws"], draws, strict=True):
            cost = draw.get("teacher_cost") or {}
            tokens = f"{compact(cost.get('prompt_tokens'))}/{compact(cost.get('completion_tokens'))}"
            spread = ("-" if row["source_low"] is None
                      else f"{row['source_low']:.0%}-{row['source_high']:.0%}")
            lines.append((f"{name if row['draw'] == 0 else '':<{width}} {'r' + str(row['draw']):>6} "
                          f"{pct(row['token_share']):>11} {spread:>11} {number(row['length_ratio']):>8} "
                          f"{pct(row['overlap_random']):>17} {pct(row['overlap_first']):>13} "
                          f"{number(row['rank_agreement_first']):>10} {pct(row['known_bad_kept']):>14}  "
                          f"{count(cost.get('requests')):>17} {count(cost.get('answered')):>6} {tokens:>13} "
                          f"{number(cost.get('seconds'), 0):>8}", None))
        mean = _pooled_means(entry["pooled"])
        lines.append((f"{'':<{width}} {'mean':>6} {mean('token_share'):>11} {'':>11} "
                      f"{mean('length_ratio', number):>8} {mean('overlap_random'):>17} {mean('overlap_first'):>13} "
                      f"{mean('rank_agreement_first', number):>10} {mean('known_bad_kept'):>14}", None))
    lines.append(("  teacher: each draw's annotate pass (requests asked, new: answers paid for; the rest came from "
                  "the teacher cache); discover's rubrics are shared", None))
    return lines + replicate_verdict_lines(block)


def _pooled_means(pooled: dict[str, Any]) -> Any:
    def mean(key: str, fmt: Any = pct) -> str:
        return str(fmt(pooled[key]["mean"])) if pooled.get(key) else "-"

    return mean


def replicate_verdict_lines(block: dict[str, Any]) -> list[Line]:
    """Each MIRA selection against random per eval set: a - b per draw, then pooled over the draws."""
    verdicts = block.get("verdicts") or []
    if not verdicts:
        return []
    family = next((v["pooled"]["family"] for v in verdicts if v["pooled"].get("family")), None)
    how = f", Holm over {family} tests" if family else ""
    width = max([9] + [len(v["a"]) for v in verdicts])
    sets = max([8] + [len(v["eval_set"]) for v in verdicts])
    draws = [f"r{d['draw']}" for d in verdicts[0]["draws"]]
    lines: list[Line] = [
        (f"proxy over annotation draws: each MIRA selection against {verdicts[0]['b']} (bits per byte; per draw: "
         f"mean paired difference over the seeds; pooled: t over the {len(draws)} draws{how})", None),
        (f"{'selection':<{width}} {'eval set':<{sets}} " + " ".join(f"{d:>8}" for d in draws)
         + f" {'pooled':>8} {'95% CI':>19} {'Holm p':>7} {'draws +/-':>9} {'draws 80%':>9}  verdict", None)]
    for v in verdicts:
        pooled = v["pooled"]
        low, high = pooled.get("low"), pooled.get("high")
        interval = "-" if low is None or high is None else f"{low:+.4f}..{high:+.4f}"
        p = pooled["p_holm"] if pooled.get("p_holm") is not None else pooled.get("p")
        reading = ("better" if pooled.get("better") == v["a"] else "worse" if pooled.get("better")
                   else "within noise")
        colour = "green" if reading == "better" else "red" if reading == "worse" else None
        called = f"{pooled['draws_better']}/{pooled['draws_worse']}"
        lines.append((f"{v['a']:<{width}} {v['eval_set']:<{sets}} "
                       + " ".join(f"{signed(d['diff']):>8}" for d in v["draws"])
                       + f" {signed(pooled['diff']):>8} {interval:>19} {number(p, 3):>7} {called:>9} "
                         f"{count(pooled.get('replicates_needed')):>9}  {reading}", colour))
    lines.append(("  draws +/-: single draws that called it better / worse (each at plain p); draws 80%: annotation "
                  "draws a difference this size needs", None))
    return lines


def selection_table(result: dict[str, Any]) -> list[Line]:
    overlap = result["overlap"]
    random_names = [m["name"] for m in result["methods"] if m["method"] == "random"]
    bad = result.get("known_bad") or {}
    width = max([28] + [len(m["name"]) for m in result["methods"]])
    costs = result.get("teacher_cost") or {}
    lines: list[Line] = [(f"{'selection':<{width}} {'kept tokens':>11} {'per source':>11} {'length x':>8} "
                          f"{'overlap w/ random':>17} {'known-bad kept':>14}  {'teacher: requests':>17} "
                          f"{'tokens in/out':>13} {'seconds':>8}", None)]
    for method in result["methods"]:
        name = method["name"]
        kept = result["retention"][name]["totals"]["token_share"]
        ratio = result["length_bias"][name]["mean_ratio"]
        row = overlap["methods"].index(name)
        share = overlap["matrix"][row][overlap["methods"].index(random_names[0])] if random_names else None
        known = (bad.get("methods") or {}).get(name, {}).get("record_share")
        cost = costs.get(name) or {}
        tokens = f"{compact(cost.get('prompt_tokens'))}/{compact(cost.get('completion_tokens'))}" if cost else "-"
        lines.append((f"{name:<{width}} {pct(kept):>11} {source_range(result, name):>11} {number(ratio):>8} "
                      f"{pct(share):>17} {pct(known):>14}  "
                      f"{count(cost.get('requests')):>17} {tokens:>13} {number(cost.get('seconds'), 0):>8}", None))
    cached = sorted({n for n, c in costs.items() if c.get("cache_hits")})
    if cached:
        lines.append(("  teacher cost: what this run sent (usage/<stage>.json); answers from the teacher cache were "
                      f"free here ({', '.join(cached)} had some)", None))
    budget = result.get("dataman_budget")
    if budget:
        lines.append((f"  DataMan labelled {budget['records']:,} records at MIRA's teacher budget "
                      f"(~{budget['estimated_tokens']:,} tokens; annotate: {budget['annotate_tokens']:,})", None))
    return lines


def source_shares(result: dict[str, Any], name: str) -> dict[str, float]:
    """Source -> the share of its tokens selection `name` kept."""
    sources = (result.get("retention", {}).get(name) or {}).get("sources") or {}
    return {s: e["token_share"] for s, e in sources.items() if e.get("token_share") is not None}


def source_range(result: dict[str, Any], name: str) -> str:
    """The lowest and highest share of a source's tokens kept: ``48%-52%`` keeps the mixture."""
    shares = source_shares(result, name).values()
    return f"{min(shares):.0%}-{max(shares):.0%}" if shares else "-"


def source_lines(result: dict[str, Any]) -> list[Line]:
    """Kept share of each source's tokens, one line per selection."""
    lines: list[Line] = [("kept share of each source's tokens:", None)]
    for method in result["methods"]:
        shares = source_shares(result, method["name"])
        lines.append((f"  {method['name']}: " + ", ".join(f"{s} {v:.0%}" for s, v in shares.items()), None))
    return lines


def overlap_lines(result: dict[str, Any]) -> list[Line]:
    """A warning per eval set some of whose records duplicate corpus records (held out only in part)."""
    sets = (result.get("eval_overlap") or {}).get("sets") or {}
    return [(f"  note: eval set {name}: {e['overlapping']} of {e['records']} records duplicate corpus records "
             f"({', '.join(f'{e[k]} {k}' for k in ('exact', 'normalised', 'near') if e[k])}); its verdicts favour "
             "selections that kept them", "yellow") for name, e in sets.items() if e["overlapping"]]


def verdict_table(result: dict[str, Any]) -> list[Line]:
    """Each selection against random, per eval set: a - b (bpb), 95% CI, Holm p, seeds for 80% power."""
    verdicts = [v for v in (result.get("proxy") or {}).get("verdicts", []) if v["vs_random"]]
    if not verdicts:
        return []
    family = next((v["family"] for v in verdicts if v.get("family")), None)
    how = f"paired by seed, Holm over {family} tests" if family else "paired by seed"
    baseline = verdicts[0]["b"]
    width = max([9] + [len(v["a"]) for v in verdicts])
    sets = max([8] + [len(v["eval_set"]) for v in verdicts])
    lines: list[Line] = [(f"proxy: each against {baseline} (bits per byte, lower is better; {how})", None),
                         (f"{'selection':<{width}} {'eval set':<{sets}} {'a - b':>8} {'95% CI':>19} "
                          f"{'Holm p':>7} {'seeds 80%':>9} {'per source':>11}  verdict", None)]
    for v in verdicts:
        p = None if v.get("same_records") else v.get("p_holm") if v.get("p_holm") is not None else v.get("p")
        low, high = v.get("low"), v.get("high")
        interval = "-" if low is None or high is None else f"{low:+.4f}..{high:+.4f}"
        reading = ("better" if v.get("better") == v["a"] else "worse" if v.get("better")
                   else "same records" if v.get("same_records") else "within noise")
        colour = "green" if reading == "better" else "red" if reading == "worse" else None
        lines.append((f"{v['a']:<{width}} {v['eval_set']:<{sets}} {signed(v.get('diff')):>8} {interval:>19} "
                      f"{number(p, 3):>7} {count(v.get('seeds_needed')):>9} {source_range(result, v['a']):>11}  "
                      f"{reading}", colour))
    return lines


def pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def number(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def signed(value: float | None) -> str:
    return "-" if value is None else f"{value:+.4f}"


def compact(value: float | None) -> str:
    """12345 -> 12.3k: token counts in a narrow column."""
    if value is None:
        return "-"
    for limit, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= limit:
            return f"{value / limit:.1f}{suffix}"
    return f"{value:.0f}"


def count(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"
