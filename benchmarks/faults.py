"""Teacher faults: what each kind of failure costs, and what a rerun after recovery repeats or loses.

    .venv/bin/python benchmarks/faults.py [--share 0.3] [--records 12] [--kinds 500,429,...]

For every fault kind, `mira annotate` runs (through the real CLI) against a scripted
OpenAI-compatible server that fails the given share of requests (chosen by a hash of the prompt,
so the same requests fail on every attempt) in that way; then the server recovers and the
command the README gives is run again (`mira annotate`, or `mira annotate --force` when the first
run was marked done). Each kind runs under two failure policies: `strict`
(`teacher.max_failed_share=0`: any failure stops the stage) and `default` (stop only when a group
is left without enough labels to train). `refused` is a server that is down for the whole first
run (nothing listens on its port). The `*-logprobs` kinds answer validly but spoil the logprobs
the way broken servers do (mira.teacher.testing.spoiled_logprobs: NaN, Infinity, a logprob of
1000, a string, `top_logprobs` as an object). `disk-full` fails no request: the disk under
`teacher_cache.sqlite` fills after about one database page of answers in the first run (SQLite's
own SQLITE_FULL, "database or disk is full", through `PRAGMA max_page_count`, as a full file
system gives it), and the second run has room again; its `repeated` column counts the answers
paid for in the first run but not stored (the requests in flight when the disk filled).

Per kind and policy it prints: HTTP requests paid in both runs, requests of the second run that
had already been answered validly in the first (goal 0), label rows still failed after recovery
(goal 0), ok label rows whose target is not a finite number after recovery (`nan ok`, goal 0),
both exit codes, and whether the first run left a done marker next to failed label rows. Under
`default` that is the documented policy (failed rows kept with ok=false, `--force` retries
them); under `strict` it must never happen. Discover is not driven here: its embedding model
makes each run slow on 2 cores; tests/stages/test_discover.py covers its fault path.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import shutil
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

KINDS = ["500", "429", "garbage", "hang", "drop", "refused", "schema-invalid", "out-of-range", "nan-logprobs",
         "inf-logprobs", "big-logprobs", "string-logprobs", "object-logprobs", "disk-full"]
ANCHORS = ["a00", "a01", "a02"]


def _answer(body: dict[str, Any], score: int = 6) -> str:
    props = body["response_format"]["json_schema"]["schema"]["properties"] if "json_schema" in \
        body.get("response_format", {}) else {a: None for a in ANCHORS}
    return json.dumps({a: {"why": "plain and correct", "score": score} for a in props})


def _fault(kind: str, body: dict[str, Any]) -> Any:
    from mira.teacher.testing import Fault, Reply, spoiled_logprobs

    if kind.endswith("-logprobs"):
        content = _answer(body)
        return Reply(content, logprobs=spoiled_logprobs(Reply(content), kind.removesuffix("-logprobs")))
    return {"500": lambda: Fault.status(500), "429": lambda: Fault.status(429, retry_after=0),
            "garbage": Fault.garbage, "hang": lambda: Fault.delay(2.0, then=_answer(body)), "drop": Fault.drop,
            "schema-invalid": lambda: '{"a00": {"why": 3}}', "out-of-range": lambda: _answer(body, score=11),
            }[kind]()


def _corpus(root: Path, n: int) -> Any:
    from mira.core.config import AnnotationConfig, RunConfig

    for name in ("alpha", "beta"):
        lines = [json.dumps({"id": i, "text": f"{name} record {i}: " + "some sentence of real text. " * (3 + i % 5)})
                 for i in range(n)]
        (root / f"{name}.jsonl").write_text("\n".join(lines) + "\n")
    return RunConfig.model_validate({
        "name": "faults", "run_dir": str(root / "template"), "tokenizer": {"name": "bytes4"},
        "sources": [{"name": s, "path": str(root / f"{s}.jsonl")} for s in ("alpha", "beta")],
        "annotation": AnnotationConfig(protocol="annotate_v2", records_per_group=n,
                                       self_consistency_records=4).model_dump()})


def _template(config: Any) -> Path:
    """A run directory after ingest, with one group and a hand-written rubric (no embedding model)."""
    from mira import api
    from mira.artifacts.anchors import Anchor, save_rubric
    from mira.io.files import atomic_write_json
    from mira.run.rundir import RunDir

    api.run_one("ingest", config)
    run = RunDir(config.resolved_run_dir())
    atomic_write_json(run.groups_path, {
        "k": 1, "chosen_by": "config", "k_scores": {},
        "groups": [{"id": "g0", "label": "g0", "sources": ["alpha", "beta"], "within_similarity": 1.0,
                    "pinned": False}],
        "source_to_group": {"alpha": "g0", "beta": "g0"},
        "similarity": {"sources": ["alpha", "beta"], "matrix": [[1.0, 1.0], [1.0, 1.0]]}})
    run.mark_done("group", "group-fp")
    save_rubric(run, "g0", [Anchor(id=a, name=f"Quality {a}", definition=f"How good the record is at {a}.",
                                   low="poor", mid="ordinary", high="exemplary") for a in ANCHORS])
    run.mark_done("discover", "discover-fp")
    return run.root


@contextlib.contextmanager
def _disk_fills(pages: int) -> Iterator[None]:
    """Every teacher cache opened inside holds at most `pages` more database pages: then SQLite
    answers SQLITE_FULL ("database or disk is full") on the next write, as on a full disk."""
    from mira.teacher.cache import TeacherCache

    original = TeacherCache._set_up

    def set_up(self: Any, busy_timeout_s: float) -> None:
        original(self, busy_timeout_s)
        used = self._conn.execute("PRAGMA page_count").fetchone()[0]
        self._conn.execute(f"PRAGMA max_page_count = {used + pages}")

    TeacherCache._set_up = set_up  # type: ignore[method-assign]
    try:
        yield
    finally:
        TeacherCache._set_up = original  # type: ignore[method-assign]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _mira(args: list[str]) -> int:
    from click.testing import CliRunner

    from mira.cli import main

    return CliRunner().invoke(main, args).exit_code


def run_kind(kind: str, policy: str, share: float, config: Any, template: Path, work: Path) -> dict[str, Any]:
    import pyarrow.parquet as pq

    from mira.run.config_file import dump_config
    from mira.run.rundir import RunDir
    from mira.teacher.testing import ScriptedServer

    state: dict[str, Any] = {"broken": True, "answered": set(), "failing": set(), "repeated": 0,
                             "lock": threading.Lock()}

    def handler(body: dict[str, Any]) -> Any:
        prompt = json.dumps(body["messages"][:2], sort_keys=True)  # without a json_object fallback note
        failing = int(hashlib.sha256(prompt.encode()).hexdigest(), 16) % 1000 < share * 1000
        with state["lock"]:
            if state["broken"] and failing and kind != "disk-full":
                state["failing"].add(prompt)
                return _fault(kind, body)
            if not state["broken"] and prompt in state["answered"]:
                state["repeated"] += 1
            if state["broken"]:
                state["answered"].add(prompt)
        return _answer(body)

    folder = work / f"{kind}-{policy}"
    shutil.copytree(template, folder / "run")
    overrides = {"max_retries": 1, "max_parse_retries": 1, "timeout_s": 0.5 if kind == "hang" else 5.0,
                 "max_failed_share": 0.0 if policy == "strict" else None}
    with ScriptedServer(handler) as server:
        config.run_dir = str(folder / "run")
        config.teacher = server.teacher_config(**overrides)
        if kind == "refused":
            config.teacher.base_url = f"http://127.0.0.1:{_free_port()}/v1"
        path = folder / "mira.yaml"
        path.write_text(dump_config(config))
        started = time.monotonic()
        with _disk_fills(1) if kind == "disk-full" else contextlib.nullcontext():
            first = _mira(["annotate", str(path)])
        seconds = time.monotonic() - started
        run = RunDir(folder / "run")
        labels = run.path("labels", "g0.parquet")
        failed_rows = sum(not ok for ok in pq.read_table(labels)["ok"].to_pylist()) if labels.exists() else None
        done_first = run.done("annotate") is not None
        paid_first = len(server.requests)

        state["broken"] = False
        config.teacher = server.teacher_config(**overrides)
        path.write_text(dump_config(config))
        second = _mira(["annotate", str(path)] + (["--force"] if done_first else []))
        rows = [r for name in ("g0.parquet", "g0.consistency.parquet")
                for r in pq.read_table(run.path("labels", name)).to_pylist()] if labels.exists() else []
    # `refused`: the first run's attempts never reach a server, so only the second run pays.
    asked = len(state["answered"]) + len(state["failing"]) if kind != "refused" else None
    return {"kind": kind, "policy": policy, "paid": len(server.requests), "first_run_paid": paid_first,
            "failing": "disk" if kind == "disk-full" else f"{len(state['failing'])}/{asked}" if asked else "all",
            "repeated": state["repeated"], "lost": sum(not r["ok"] for r in rows) if rows else None,
            "nan": sum(bool(r["ok"]) and not all(math.isfinite(r[a]) for a in ANCHORS) for r in rows),
            "exit": f"{first} -> {second}", "done_with_failures": bool(done_first and failed_rows),
            "failed_rows_first": failed_rows, "first_run_s": round(seconds, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--share", type=float, default=0.3, help="share of requests that fail in the first run")
    parser.add_argument("--records", type=int, default=12, help="records per source (two sources, one group)")
    parser.add_argument("--kinds", default=",".join(KINDS))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mira-faults-") as tmp:
        work = Path(tmp)
        config = _corpus(work, args.records)
        template = _template(config)
        print(f"annotate, {2 * args.records} records in one group of two sources (records_per_group="
              f"{args.records}, +4 re-scored); {args.share:.0%} of requests fail in the first run, then the "
              "server recovers and the README's rerun command is run;\n"
              "failing: requests that failed in the 1st run (hash-chosen); paid: HTTP requests over both runs, "
              "retries included")
        header = f"{'fault':<17}{'policy':<9}{'failing':>8}{'paid':>6}{'repeated':>10}{'lost':>6}{'nan ok':>8}  " \
                 f"{'exit 1st -> 2nd':<17}{'done w/ failed rows':<21}{'1st run s':>9}"
        print(header)
        print("-" * len(header))
        for kind in args.kinds.split(","):
            for policy in ("strict", "default"):
                row = run_kind(kind, policy, args.share, config.model_copy(deep=True), template, work)
                done = "no" if not row["done_with_failures"] else f"yes ({row['failed_rows_first']} rows)"
                lost = row["lost"] if row["lost"] is not None else "-"
                print(f"{row['kind']:<17}{row['policy']:<9}{row['failing']:>8}{row['paid']:>6}{row['repeated']:>10}"
                      f"{lost:>6}{row['nan']:>8}  {row['exit']:<17}{done:<21}{row['first_run_s']:>9}")
                sys.stdout.flush()


if __name__ == "__main__":
    main()
