"""Teacher client overhead and the bundled teacher's cost per scored record.

1. Throughput ratio: the same chat requests sent (a) raw with httpx at the chosen concurrency and
   (b) through ``Teacher.run`` (cache, budget, parsing, expected scores), against the local server.
   Reported as tokens/s (prompt + completion) of (b) over (a); the goal is >= 0.9. Passes alternate and each
   pass uses fresh record texts, so llama.cpp's prompt cache favours neither side.
2. Seconds per scored record with the default 1.5B teacher: a scores-only JSON answer for 8
   anchors on a ~400-token record.

    .venv/bin/python benchmarks/teacher_client.py [--model qwen2.5-coder-0.5b] [--skip-1p5b]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sysconfig
import tempfile
import time
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from mira.core.config import TeacherConfig
from mira.run.rundir import RunDir
from mira.teacher import Score, TeacherRequest, open_teacher, wrap_record
from mira.teacher.local import local_server


class Clarity(BaseModel):
    model_config = ConfigDict(extra="forbid")
    score: Score


class AnchorScore(BaseModel):
    model_config = ConfigDict(extra="forbid")
    score: Score


class AnchorScores(BaseModel):
    model_config = ConfigDict(extra="forbid")
    scores: list[AnchorScore] = Field(min_length=8, max_length=8)


ANCHORS = ["correctness", "clarity of names", "documentation", "error handling", "idiomatic style",
           "modularity", "test-friendliness", "usefulness as training data"]


def stdlib_snippets(n: int, chars: int, offset: int = 0) -> list[str]:
    files = sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py"))
    texts = []
    for path in files[offset:]:
        text = path.read_text(errors="replace")
        if len(text) >= chars:
            texts.append(text[:chars])
        if len(texts) == n:
            return texts
    return texts


def clarity_requests(texts: list[str], max_tokens: int) -> list[TeacherRequest]:
    return [TeacherRequest([{"role": "system", "content": "You rate code. Answer with JSON only."},
                            {"role": "user", "content": "Rate the clarity of this code from 0 to 10.\n"
                                                        + wrap_record(t)}],
                           schema=Clarity, prompt_version="bench_v1", max_tokens=max_tokens, tag=str(i))
            for i, t in enumerate(texts)]


async def raw_pass(url: str, bodies: list[dict], concurrency: int) -> tuple[float, int]:
    import httpx

    semaphore = asyncio.Semaphore(concurrency)
    tokens = 0

    async def one(http: httpx.AsyncClient, body: dict) -> None:
        nonlocal tokens
        async with semaphore:
            response = await http.post(url + "/chat/completions", json=body, timeout=600)
            usage = response.json()["usage"]
            tokens += usage["prompt_tokens"] + usage["completion_tokens"]

    started = time.perf_counter()
    async with httpx.AsyncClient(verify=False) as http:
        await asyncio.gather(*(one(http, b) for b in bodies))
    return time.perf_counter() - started, tokens


def throughput_ratio(model: str, n: int, concurrency: int, rounds: int) -> None:
    config = TeacherConfig(model=model, concurrency=concurrency, ctx_size=1024)
    raw_rate, client_rate = [], []
    with local_server(config) as server, tempfile.TemporaryDirectory() as tmp:
        for round_ in range(rounds):
            for side in ("raw", "client"):
                offset = (round_ * 2 + (side == "client")) * n
                requests = clarity_requests(stdlib_snippets(n, 600, offset), max_tokens=48)
                if side == "raw":
                    from mira.teacher.client import ChatClient

                    client = ChatClient(config, server.url, model, None)
                    bodies = [client.body(r.messages, r.json_schema(), "Clarity", r.max_tokens, 0.0, 0, True,
                                          config.logprobs) for r in requests]
                    seconds, tokens = asyncio.run(raw_pass(server.url, bodies, concurrency))
                    raw_rate.append(tokens / seconds)
                else:
                    run = RunDir(Path(tmp) / f"run{round_}")
                    with open_teacher(config, run, stage="bench") as teacher:
                        started = time.perf_counter()
                        results = teacher.run(requests)
                        seconds = time.perf_counter() - started
                        tokens = teacher.usage["prompt_tokens"] + teacher.usage["completion_tokens"]
                    client_rate.append(tokens / seconds)
                    ok = sum(r.ok for r in results)
                print(f"  round {round_} {side:<6} {n} requests  {seconds:6.1f} s  {tokens / seconds:6.1f} tok/s"
                      + (f"  ({ok}/{n} parsed)" if side == "client" else ""), flush=True)
    raw, ours = sum(raw_rate) / len(raw_rate), sum(client_rate) / len(client_rate)
    print(f"{model}, concurrency {concurrency}: raw httpx {raw:.1f} tok/s, Teacher.run {ours:.1f} tok/s "
          f"-> ratio {ours / raw:.2f} (goal >= 0.9)")


def seconds_per_record(model: str, records: int) -> None:
    config = TeacherConfig(model=model, concurrency=1, ctx_size=2048)
    anchors = "\n".join(f"{i + 1}. {a}" for i, a in enumerate(ANCHORS))
    texts = stdlib_snippets(records, 1_600, offset=40)
    requests = [TeacherRequest(
        [{"role": "system", "content": "You are a strict data-quality judge. Answer with JSON only."},
         {"role": "user", "content": f"Score the record on each anchor, in this order, 0 (useless) to 10 (rare "
                                     f"excellence), 5 is ordinary:\n{anchors}\n\n{wrap_record(t)}"}],
        schema=AnchorScores, prompt_version="bench_anchor_v1", max_tokens=160, tag=str(i))
        for i, t in enumerate(texts)]
    started = time.perf_counter()
    with local_server(config):
        ready = time.perf_counter() - started
        with tempfile.TemporaryDirectory() as tmp, open_teacher(config, RunDir(tmp), stage="bench") as teacher:
            started = time.perf_counter()
            results = teacher.run(requests)
            seconds = time.perf_counter() - started
            usage = teacher.usage
    ok = [r for r in results if r.ok]
    print(f"{model}: server ready in {ready:.1f} s (assembly/verification included on first use)")
    print(f"{model}: {seconds / records:.1f} s per scored record ({records} records, 8 anchors, "
          f"{usage['prompt_tokens'] / records:.0f} prompt + {usage['completion_tokens'] / records:.0f} completion "
          f"tokens each, {len(ok)}/{records} parsed)")
    if ok:
        print(f"  e.g. scores {[s.score for s in ok[0].value.scores]}, "
              f"expected {[round(x, 1) if x is not None else None for x in ok[0].expected_scores or []]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m", help="model for the throughput ratio")
    parser.add_argument("--requests", type=int, default=8)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--records", type=int, default=3, help="records for the 1.5B timing")
    parser.add_argument("--skip-1p5b", action="store_true")
    args = parser.parse_args()
    print(f"cpus {os.cpu_count()}, load average {os.getloadavg()[0]:.1f}")
    throughput_ratio(args.model, args.requests, args.concurrency, args.rounds)
    if not args.skip_1p5b:
        seconds_per_record("qwen2.5-coder-1.5b", args.records)
    print(f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
