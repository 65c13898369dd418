"""Annotate protocols on real demo records: annotate_v1 vs annotate_v2 vs annotate_v3 (the default).

v1: every anchor of a record in one JSON answer with a score object per anchor; v2: the same, flat
scores and a calibrated scale; v3: one anchor per request (the group's cards, the record, then a
question naming one anchor), answered with one bare integer read as an exact logprob expectation.

On the same records of two demo groups, each record is scored twice per protocol. The second
scoring is an equivalent variant, never the identical prompt (identical prompts give identical
logprobs): v1 shuffles the anchor order per record (as annotate_v1 did), v2 once per group (so the
re-scoring prefix is cached as well), and v3 lists every card's guides and the scale's bands from
HIGH to LOW instead of LOW to HIGH, the numbers meaning the same things. Requests go one at a time
to the bundled llama.cpp server in blocks of records per (group, protocol), originals then
re-scorings as the annotate stage sends them (v3's three requests of a record on one slot); each
protocol goes first in turn so outside load hits all alike. Printed per protocol:

- seconds per label (one label = one record scored on every anchor: the wall time of its one
  request, or the sum of v3's three), and the server's own compute time (`timings`),
- prompt tokens the server actually processed per label (`timings.prompt_n`) next to the tokens it
  took from its prompt cache (`timings.cache_n`), and output tokens,
- label spread: std of the training target per anchor, share of the modal sampled score,
- teacher self-consistency: Spearman between the two scorings per anchor, averaged (on the
  expectations, and on the sampled integers), their mean absolute difference, and the share of
  targets that are expectations (not sampled fallbacks).

The anchors are fixed here (three per group, like the 20-minute demo's rubric) so all protocols see
the same cards and discover's randomness stays out. Real-model runs take both CPU cores:

    PYTHONPATH=src .venv/bin/python benchmarks/labels.py --records 12 [--max-minutes 25] [--data demo-data]
        [--protocols v1 v2 v3 v3s] [--own-server --threads 1] [--json out.json]

`--max-minutes` stops before the next block and reports on the records done (sizes printed).
`--own-server` starts a server for this run alone instead of sharing a running one's slots and
prompt cache (another run's requests would queue in front of ours); `--threads 1` there, because
under outside load llama.cpp's two threads spin-wait on each other (a v1 request took > 4 minutes).

Measured 2026-11-27 on the shared 2-core machine under heavy outside load (load average ~10, our
server at nice 5 with 1 thread, so seconds are ~5x idle; compare them only within a run):
run 1, `--records 6 --block 3 --max-minutes 22 --own-server --threads 1`, stopped by the budget
after 3 code records (scored twice by each protocol), v1 -> v2 -> v3: seconds/label 92.8 -> 76.3 ->
53.5 (v3 0.58x v1, 0.70x v2), prompt tokens processed 546 -> 521 -> 587 (cached 314 -> 339 ->
1958; v3 processes the record once and ~45 tokens per anchor), output tokens 43 -> 34 -> 6.
Run 2, `--protocols v3 --records 10 --block 5 --seed 1 --max-minutes 27 --own-server --threads 1`,
2 groups x 10 records scored twice: self-consistency Spearman 0.78 on the expectations (0.10 on the
sampled integers; mean |difference| 0.78 points: listing the guides HIGH first moves the scores),
label std 0.14, modal share 0.83, 99% of targets expectations, 36.7 s/label (443 prompt tokens
processed, 1908 cached, 6 output). For v1 and v2 on more records see the earlier 24-record run:
self-consistency 0.39 and 0.15, label std 0.23 and 0.21, modal share 0.85 and 0.86. The 1.5B
teacher still samples the same integer on most anchors of a record; its expectations carry the
ranking, and in v3 each is the first token of its own answer, so no anchor copies another.

Run 3, on the 0-9 scale v3 now asks, 2026-11-28, `--protocols v1 v3 v3s --records 8 --block 4`
(shared server, the author's tests beside it for the first minutes; 16 records scored twice):
seconds/label v1 17.2, v3 9.7 (0.56x v1), v3s 10.4; prompt tokens processed 433 / 394 / 432, cached
376 / 1970 / 1902, output 43 / 6 / 6; self-consistency 0.22 / 0.86 / 0.77 (sampled integers 0.38 /
-0.04 / 0.27); label std 0.71 / 0.61 / 0.60; modal share 0.85 / 0.65 / 0.71; exact expectations
57% / 90% / 88%. Rank agreement between protocols: v1~v3 0.55, v3~v3s 0.95. v3s (no definition
restated in the question) was not faster, so annotate_v3 keeps the definition.

Run 4, steady state, 2026-11-28, `--protocols v1 v3 --records 10 --block 5` (quiet machine): each
pass (group, protocol, original or variant) now starts with one untimed request for a stand-in
record, so the server holds the pass's shared prefix (system, cards, scale) as it does in annotate
after a group's first record; before, blocks alternated groups and protocols on v3's one slot and
v3 reprocessed its cards at every pass (`--no-warm` times it that way). 2 groups x 10 records
scored twice: seconds/label v1 13.9, v3 10.7 (0.77x), prompt tokens processed 376 / 416 (cached
430 / 1937), output 43 / 6; self-consistency 0.25 / 0.87; label std 0.64 / 0.56; modal share
0.88 / 0.67; exact expectations 57% / 90%; v1~v3 rank agreement 0.50. A label costs its processed
prompt tokens (~39/s here): v3's three questions (~40 tokens each after the record) outweigh the
43 output tokens v1 writes; the 0.56x of run 3 came from its ordering and load (v1 processed 433
tokens a label there, 376 here, and ran beside tests), and 0.5x
needs fewer record tokens for the teacher or a faster server, not another prompt.

Run 5, fewer record tokens, 2026-11-28, `--protocols v1 v3 v3t --records 10 --block 5 --data <demo>`
(the machine ~20% slower than in run 4; the same 20 records, prompt tokens identical): v3t is v3 with
the records rendered for the teacher at `--teacher-tokens 128` instead of the demo's 256. Seconds/label
v1 15.6, v3 12.9 (0.83x), v3t 9.6 (0.61x); prompt tokens processed 376 / 416 / 319; self-consistency
0.25 / 0.87 / 0.78; label std 0.64 / 0.56 / 0.56; modal share 0.88 / 0.67 / 0.65. Rank agreement of
the first scorings: v3~v3t 0.57, v1~v3 0.50, v1~v3t 0.30. Half the record buys 0.22x of v1's time and
moves the labels as far as a change of protocol does, so annotate keeps the students' rendering.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from mira.artifacts.anchors import Anchor

GROUPS = {
    "code": ["stdlib_code", "sitepkg_code", "c_headers"],
    "text": ["man_pages", "doc_readmes", "python_docs", "fortunes"],
}
ANCHORS = {
    "code": [
        Anchor(id="a00", name="Documentation", definition="How well comments and docstrings explain purpose and use.",
               low="No comments or docstrings, or misleading ones.", mid="Some docstrings or comments, uneven.",
               high="Clear docstrings and comments on everything non-obvious."),
        Anchor(id="a01", name="Readability", definition="How easy the code is to read and follow.",
               low="Cryptic names, tangled or duplicated logic.", mid="Readable with some effort.",
               high="Descriptive names and simple, well-structured logic."),
        Anchor(id="a02", name="Robustness", definition="How carefully errors and edge cases are handled.",
               low="Ignores errors and edge cases.", mid="Handles the common failure cases.",
               high="Validates inputs and handles errors and edge cases deliberately."),
    ],
    "text": [
        Anchor(id="b00", name="Clarity", definition="How clearly the text explains what it is about.",
               low="Confusing, fragmentary or garbled.", mid="Understandable but uneven.",
               high="Precise, well-organised explanation."),
        Anchor(id="b01", name="Informativeness", definition="How much useful technical information it carries.",
               low="Little or no useful information.", mid="Some useful facts among filler.",
               high="Dense, accurate, useful information throughout."),
        Anchor(id="b02", name="Examples", definition="Whether concrete examples or usage make the content actionable.",
               low="No examples and nothing actionable.", mid="A few hints at usage.",
               high="Concrete, correct examples of usage."),
    ],
}


def _records(data: Path, work: Path, per_group: int, seed: int) -> tuple[Any, dict[str, list[Any]]]:
    from mira.api import open_run, run_one
    from mira.corpus.sources import sample_stratified, source_infos
    from mira.demo.corpus import demo_config

    config = demo_config(data, work / "run")
    run_one("ingest", config)
    infos = {i.name: i for i in source_infos(open_run(config))}
    out = {}
    for group, sources in GROUPS.items():
        members = [infos[s] for s in sources if s in infos and infos[s].ok > 0]
        out[group] = sample_stratified(config, members, per_group, seed)
    return config, out


def _ask(http: Any, client: Any, url: str, request: Any) -> dict[str, Any]:
    from mira.teacher.request import TeacherResult
    from mira.teacher.scores import expected_scores
    from mira.teacher.teacher import parse_answer

    body = client.body(request.messages, request.json_schema(), "Annotation", request.max_tokens, 0.0, 0, True, True,
                       request.slot)
    started = time.monotonic()
    reply = http.post(url + "/chat/completions", json=body, timeout=900).json()
    seconds = time.monotonic() - started
    choice = reply["choices"][0]
    content = choice["message"]["content"] or ""
    value, error = parse_answer(content, request.schema, choice.get("finish_reason"))
    scores = expected_scores(content, choice.get("logprobs"), request.score_key) if error is None else None
    timings = reply.get("timings") or {}
    # The server's own compute time (prompt + generation), without waiting for a slot.
    server_s = ((timings.get("prompt_ms") or 0) + (timings.get("predicted_ms") or 0)) / 1000
    return {"result": TeacherResult(error is None, value, error, False, scores, {}, content),
            "seconds": seconds, "server_s": server_s, "prompt_n": timings.get("prompt_n"),
            "cache_n": timings.get("cache_n"), "completion": (reply.get("usage") or {}).get("completion_tokens")}


def _ask_all(http: Any, client: Any, url: str, requests: list[Any]) -> tuple[dict[str, Any], list[Any]]:
    """One label's requests (one for v1/v2, one per anchor for v3) in order; their costs summed."""
    calls = [_ask(http, client, url, r) for r in requests]
    total = {"seconds": sum(c["seconds"] for c in calls), "server_s": sum(c["server_s"] for c in calls),
             "requests": len(calls)}
    for key in ("prompt_n", "cache_n", "completion"):
        total[key] = sum(c[key] or 0 for c in calls)
    return total, [c["result"] for c in calls]


def _spearman(a: list[float], b: list[float]) -> float | None:
    from scipy.stats import spearmanr

    if len(a) < 3 or len(set(a)) < 2 or len(set(b)) < 2:
        return None
    return float(spearmanr(a, b).statistic)


def summarize(rows: dict[str, dict[str, list[dict[str, Any]]]], ids: dict[str, list[str]]) -> dict[str, Any]:
    """Per protocol: cost, spread and self-consistency over the finished records."""
    out: dict[str, Any] = {}
    for proto, by_group in rows.items():
        calls = [c for g in by_group.values() for pair in g for c in pair["calls"]]
        stds, modal, rhos, rhos_sampled, kinds, maes = [], [], [], [], [], []
        for group, pairs in by_group.items():
            ok = [p for p in pairs if p["first"]["ok"] and p["second"]["ok"]]
            for aid in ids[group]:
                first = [p["first"][aid] for p in ok]
                second = [p["second"][aid] for p in ok]
                sampled = [p["first"][f"{aid}__sampled"] for p in ok]
                kinds += [p[w][f"{aid}__target_kind"] == "expected" for p in ok for w in ("first", "second")]
                if len(first) >= 2:
                    stds.append(statistics.pstdev(first))
                    modal.append(Counter(sampled).most_common(1)[0][1] / len(sampled))
                maes += [abs(a - b) for a, b in zip(first, second, strict=True)]
                rho = _spearman(first, second)
                rhos.append(0.0 if rho is None else rho)  # a constant anchor agrees on nothing
                rho_s = _spearman(sampled, [p["second"][f"{aid}__sampled"] for p in ok])
                rhos_sampled.append(0.0 if rho_s is None else rho_s)
        # A prompt the server had processed in full before (prompt_n <= 1: an identical earlier
        # request, e.g. from an interrupted run) is a replay the teacher cache would serve anyway.
        calls = [c for c in calls if (c["prompt_n"] or 0) > 1] or calls
        first_calls = [c for g in by_group.values() for pair in g for c in pair["calls"][:1]
                       if (c["prompt_n"] or 0) > 1]
        out[proto] = {
            "records": sum(len(g) for g in by_group.values()),
            "failed": sum(not c["ok"] for c in calls),
            "s_per_label": statistics.mean(c["seconds"] for c in calls) if calls else None,
            "s_per_label_first": statistics.mean(c["seconds"] for c in first_calls) if first_calls else None,
            "server_s_per_label": statistics.mean(c.get("server_s", 0) for c in calls) if calls else None,
            "requests_per_label": statistics.mean(c.get("requests", 1) for c in calls) if calls else None,
            "prompt_processed": statistics.mean(c["prompt_n"] or 0 for c in calls) if calls else None,
            "prompt_cached": statistics.mean(c["cache_n"] or 0 for c in calls) if calls else None,
            "output_tokens": statistics.mean(c["completion"] or 0 for c in calls) if calls else None,
            "label_std": statistics.mean(stds) if stds else None,
            "modal_share": statistics.mean(modal) if modal else None,
            "self_consistency": statistics.mean(rhos) if rhos else None,
            "self_consistency_sampled": statistics.mean(rhos_sampled) if rhos_sampled else None,
            "self_consistency_mae": statistics.mean(maes) if maes else None,
            "expected_share": statistics.mean(kinds) if kinds else None,
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=12, help="records per group (issue 11 asks 40)")
    parser.add_argument("--data", type=Path, default=None, help="a built demo corpus (default: build one)")
    parser.add_argument("--max-minutes", type=float, default=25.0)
    parser.add_argument("--json", type=Path, default=None, help="also write the raw rows and summary here")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--protocols", nargs="+", default=["v1", "v2", "v3"], choices=["v1", "v2", "v3", "v3s", "v3t"])
    parser.add_argument("--teacher-tokens", type=int, default=128,
                        help="v3t: v3 with records rendered for the teacher at this budget (the demo renders 256)")
    parser.add_argument("--threads", type=int, default=None,
                        help="with --own-server: llama.cpp threads (1 avoids spin-waiting under outside load)")
    parser.add_argument("--own-server", action="store_true",
                        help="start a server of our own instead of sharing a running one (its slots and prompt cache)")
    parser.add_argument("--block", type=int, default=4, help="records per (group, protocol) block")
    parser.add_argument("--no-warm", action="store_true",
                        help="time each block's first request with the shared prefix it processes (before 2026-11-28)")
    parser.add_argument("--summarize", type=Path, nargs="+", default=None,
                        help="print the table of saved --json runs (pooled, e.g. runs with different --seed)")
    args = parser.parse_args()
    if args.summarize:
        rows: dict[str, dict[str, list[dict[str, Any]]]] = {}
        for path in args.summarize:
            for proto, by_group in json.loads(path.read_text())["rows"].items():
                for group, pairs in by_group.items():
                    rows.setdefault(proto, {}).setdefault(group, []).extend(pairs)
        ids = {g: [a.id for a in ANCHORS[g]] for g in GROUPS}
        print(f"records per group done: { {p: {g: len(by[g]) for g in by} for p, by in rows.items()} } "
              f"(from {', '.join(map(str, args.summarize))})")
        _table(summarize(rows, ids))
        print("agreement: " + ", ".join(f"{k} {v:.2f}" for k, v in agreement(rows, ids).items()))
        return

    import httpx

    from mira.api import build_demo_data
    from mira.core.config import TeacherConfig
    from mira.corpus.records import Rendering, render
    from mira.rubrics import annotation, annotation_v3
    from mira.teacher import load_prompt
    from mira.teacher.client import ChatClient
    from mira.teacher.local import local_server
    from mira.text.tokens import get_tokenizer

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data = args.data or work / "demo-data"
        if args.data is None:
            build_demo_data(data)
        config, records = _records(data, work, args.records, args.seed)
        tokenizer = get_tokenizer(config.tokenizer.name)
        prompts = {p: load_prompt("annotate", int(p[1])) for p in args.protocols}
        ids = {g: [a.id for a in ANCHORS[g]] for g in GROUPS}
        rows = {p: {g: [] for g in GROUPS} for p in prompts}
        print(f"sizes: {len(GROUPS)} groups x {args.records} records (asked), 3 anchors, each record scored "
              f"twice per protocol; budget {args.max_minutes:.0f} min", flush=True)
        teacher = TeacherConfig()
        if args.own_server:
            teacher = TeacherConfig(model_cache_dir=str(_own_model_dir(teacher, work / "models")),
                                    threads=args.threads)
        started = time.monotonic()
        with local_server(teacher) as server, httpx.Client() as http:
            client = ChatClient(teacher, server.url, teacher.model, None)
            # Blocks of records per (group, protocol): originals first, then their re-scorings, as
            # the annotate stage sends them, so the server's prompt cache sees what it would see
            # there. Protocols alternate which goes first, so outside load hits both alike.
            blocks = [(g, records[g][i:i + args.block]) for i in range(0, args.records, args.block)
                      for g in GROUPS if records[g][i:i + args.block]]

            def warm_up(proto: str, cards: list[Any], record: Any, which: int) -> list[Any]:
                """One request with this pass's cards and a stand-in record: the server then holds the
                pass's shared prefix (system, cards, scale), as it does in annotate after a group's
                first record, and the timed requests pay only for what differs per record."""
                stand_in = Rendering("(a stand-in record)", 5, False)
                if proto.startswith("v3"):
                    kind = annotation.KIND.get(record.format, "a record")
                    return annotation_v3.build_requests(prompts[proto], cards, record, stand_in, "warm-up", bool(which),
                                                      0, kind, annotation.PART, proto != "v3s")[:1]
                return [annotation.build_request(prompts[proto], cards, record, stand_in, False, 100, "warm-up")]

            for n, (group, block) in enumerate(blocks):
                if time.monotonic() - started > args.max_minutes * 60:
                    print(f"budget reached after {n} of {len(blocks)} blocks", flush=True)
                    break
                anchors = ANCHORS[group]
                full = {r.id: render(r, tokenizer, config.render.max_tokens, config.render.windows) for r in block}
                short = {r.id: render(r, tokenizer, min(args.teacher_tokens, config.render.max_tokens),
                                      config.render.windows) for r in block} if "v3t" in prompts else full
                names = list(prompts)
                for proto in names[n % len(names):] + names[:n % len(names)]:  # each goes first in turn
                    # Loop values bound as defaults (B023), though order() is only called in this iteration.
                    def order(record: Any, which: int, anchors: list[Any] = anchors, proto: str = proto,
                              group: str = group) -> list[Any]:
                        if which == 0 or proto.startswith("v3"):
                            return anchors
                        key = record.id if proto == "v1" else group  # v1: per record, v2: per group
                        return annotation.shuffled(anchors, args.seed, key)
                    done: dict[str, list[Any]] = {r.id: [] for r in block}
                    rendered = short if proto == "v3t" else full
                    for which in (0, 1):
                        if not args.no_warm:  # this pass's shared prefix, processed once and untimed
                            _ask_all(http, client, server.url, warm_up(proto, order(block[0], which), block[0], which))
                        for record in block:
                            cards = order(record, which)
                            if proto.startswith("v3"):  # the variant: guides and scale listed HIGH -> LOW
                                requests = annotation_v3.build_requests(
                                    prompts[proto], cards, record, rendered[record.id], record.id, bool(which), 0,
                                    annotation.KIND.get(record.format, "a record"), annotation.PART, proto != "v3s")
                            else:
                                requests = [annotation.build_request(prompts[proto], cards, record, rendered[record.id],
                                                                   False, 100, record.id)]
                            call, results = _ask_all(http, client, server.url, requests)
                            if proto.startswith("v3"):
                                label = annotation_v3.label_row(record, rendered[record.id], ids[group], results)
                            else:
                                label = annotation.label_row(record, rendered[record.id], ids[group],
                                                           [a.id for a in cards], results[0])
                            call["ok"] = label["ok"]
                            done[record.id].append((call, label))
                            kind = ("variant" if proto.startswith("v3") else "shuffled") if which else "original"
                            print(f"{group} {proto} {kind} {record.id}: "
                                  f"{call['seconds']:.1f}s prompt {call['prompt_n']} (+{call['cache_n']} cached) "
                                  f"out {call['completion']} scores {[label[f'{a}__sampled'] for a in ids[group]]}",
                                  flush=True)
                    for record in block:
                        (c1, l1), (c2, l2) = done[record.id]
                        rows[proto][group].append({"record": record.id, "calls": [c1, c2], "first": l1, "second": l2})
                    if args.json:  # after every block, so a run cut short still leaves its figures
                        _dump(args.json, rows, ids)
        summary = summarize(rows, ids)
    print(f"\nrecords per group done: { {g: len(next(iter(rows.values()))[g]) for g in GROUPS} }, elapsed "
          f"{(time.monotonic() - started) / 60:.1f} min")
    _table(summary)
    print("agreement between protocols (Spearman of their first scorings, per anchor, averaged): "
          + ", ".join(f"{k} {v:.2f}" for k, v in agreement(rows, ids).items()))
    if args.json:
        _dump(args.json, rows, ids)


def _own_model_dir(teacher: Any, folder: Path) -> Path:
    """A model cache folder of our own (the verified GGUF linked in), so `local_server` starts a
    server for this benchmark alone instead of reusing (and sharing the slots of) a running one."""
    from mira.teacher.local import model_path

    path = model_path(teacher.model, teacher)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / path.name).symlink_to(path)
    stamp = json.loads((path.parent / f"{teacher.model}.verified.json").read_text())
    (folder / f"{teacher.model}.verified.json").write_text(json.dumps({**stamp, "path": str(folder / path.name)}))
    return folder


def agreement(rows: dict[str, dict[str, list[dict[str, Any]]]], ids: dict[str, list[str]]) -> dict[str, float]:
    """Between every two protocols: Spearman of their first scorings of the same records, per
    (group, anchor), averaged: do they rank records alike (are they asking the same thing)?"""
    out = {}
    names = list(rows)
    for i, p in enumerate(names):
        for q in names[i + 1:]:
            rhos = []
            for group in rows[p]:
                firsts = {pair["record"]: pair["first"] for pair in rows[p][group] if pair["first"]["ok"]}
                common = [(firsts[pair["record"]], pair["first"]) for pair in rows[q].get(group, [])
                          if pair["first"]["ok"] and pair["record"] in firsts]
                for aid in ids[group]:
                    rho = _spearman([a[aid] for a, _ in common], [b[aid] for _, b in common])
                    rhos.append(0.0 if rho is None else rho)
            if rhos:
                out[f"{p}~{q}"] = statistics.mean(rhos)
    return out


def _table(summary: dict[str, Any]) -> None:
    keys = ["records", "failed", "s_per_label", "s_per_label_first", "server_s_per_label", "requests_per_label",
            "prompt_processed", "prompt_cached", "output_tokens", "label_std", "modal_share", "self_consistency",
            "self_consistency_sampled", "self_consistency_mae", "expected_share"]
    print(f"{'':26}" + "".join(f"{p:>10}" for p in summary))
    for key in keys:
        cells = [summary[p][key] for p in summary]
        print(f"{key:26}" + "".join(f"{'-':>10}" if c is None else f"{c:>10.2f}" for c in cells))


def _dump(path: Path, rows: dict[str, dict[str, list[dict[str, Any]]]], ids: dict[str, list[str]]) -> None:
    slim = {p: {g: [{"record": pair["record"], "calls": pair["calls"],
                     "first": {k: v for k, v in pair["first"].items() if k != "text"},
                     "second": {k: v for k, v in pair["second"].items() if k != "text"}} for pair in pairs]
                for g, pairs in by.items()} for p, by in rows.items()}
    path.write_text(json.dumps({"summary": summarize(rows, ids), "rows": slim}, indent=1, default=str))


if __name__ == "__main__":
    main()
