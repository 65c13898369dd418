"""Whole-corpus scoring at scale: docs/s and peak RSS for growing synthetic-from-real corpora.

    .venv/bin/python benchmarks/scale.py [--sizes 10000,100000] [--million] [--workers 2]
        [--student auto|static|standin] [--without-token-counts]
    .venv/bin/python benchmarks/scale.py --select-only [--select-sizes 1000000,10000000]

`--select-only` measures select alone at 1M and 10M records, in memory and out of core, on score
files written directly (benchmarks/scale_select.py: ingest and score at 10M take hours on 2 cores).

For each size a corpus is built by resampling real text on this machine: slices of Python
stdlib files (a `code` source) and slices of /usr/share/doc READMEs and changelogs (a `docs`
source), with `demo-data/*.jsonl` records mixed in when that folder exists. Every size then runs
in a fresh child process (so peak-RSS figures do not leak between sizes): ingest, `score` with
the local engine, then `select` (default selection settings), each timed separately. The corpus
and run directory of a size are deleted once it is measured (about 2 GB each at 1M records).

The student is the real static student (mira.students: model2vec features + ridge) trained on
stand-in labels when the distilled static model is present (`--student auto`, the default);
otherwise a stand-in that still featurizes every rendering (character statistics, hashed word
counts) so the cost of reading and rendering is real. The reliability mask and the aggregate are
applied at select time (mira.scoring.table), so they are not part of the score time measured here.

Whole-corpus docs/s is set against student-alone docs/s measured in the same run: every predict
call is timed in the worker that makes it, and student-alone is the rate those processes would
reach doing nothing but predict. Their ratio (goal >= 0.8) is the share of the scoring time the
student itself takes. `--without-token-counts` scores as before ingest kept per-record token
counts (every record tokenized again), for a before/after comparison on the same machine.

Peak RSS: the driver's per stage from the kernel's VmHWM, reset before each stage (so a stage's
peak is its own), and over the whole process from getrusage(RUSAGE_SELF); the corpus is built in a
separate process, so none of it is the driver's. The workers' from a sampler thread that reads
VmHWM (the kernel's own peak-RSS counter) of every descendant process from /proc. RUSAGE_CHILDREN
is not used: it also counts the parent's pages a spawned child holds between fork and exec, so it
reports the driver's size, not the worker's. Memory should be flat in corpus size (+-20%).
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import math
import os
import random
import resource
import shutil
import subprocess
import sys
import sysconfig
import threading
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np

ANCHORS = ["a00", "a01", "a02", "a03"]


# --- corpus ------------------------------------------------------------------------------------

def _pool(seed: int) -> tuple[list[tuple[str, list[str]]], list[list[str]]]:
    """(path, lines) of stdlib files and paragraphs of /usr/share/doc texts."""
    rng = random.Random(seed)
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    py_files = sorted(p for p in stdlib.rglob("*.py") if "site-packages" not in p.parts and p.stat().st_size < 200_000)
    code = []
    for path in rng.sample(py_files, min(1500, len(py_files))):
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (UnicodeDecodeError, OSError):
            continue
        if len(lines) > 10:
            code.append((str(path.relative_to(stdlib)), lines))
    docs = []
    for path in sorted(Path("/usr/share/doc").glob("*/*")):
        if not path.name.lower().startswith(("readme", "changelog", "news")) or not path.is_file():
            continue
        try:
            raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
            text = raw.decode("utf-8")
        except (OSError, UnicodeDecodeError, EOFError, gzip.BadGzipFile):
            continue
        paragraphs = [p for p in text.split("\n\n") if p.strip()]
        if len(paragraphs) >= 2:
            docs.append(paragraphs)
    return code, docs


def build_corpus(out: Path, n: int, seed: int = 0) -> list[dict[str, Any]]:
    """Write `n` records (half code, half docs) as two JSONL sources; return their source configs."""
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    code, docs = _pool(seed)
    demo = []
    for path in sorted(Path("demo-data").glob("*.jsonl"))[:20]:
        # The demo corpus plants broken lines (ingest quarantines them); resample valid ones only.
        with open(path, encoding="utf-8", errors="replace") as handle:
            for _, line in zip(range(2000), handle):
                try:
                    demo.append(json.loads(line))
                except ValueError:
                    continue
    with open(out / "code.jsonl", "w", encoding="utf-8") as handle:
        for i in range(n // 2):
            path, lines = rng.choice(code)
            start = rng.randrange(0, max(1, len(lines) - 20))
            body = "\n".join(lines[start:start + rng.randint(20, 160)])
            handle.write(json.dumps({"id": f"code-{i}", "path": path, "code": body}) + "\n")
    with open(out / "docs.jsonl", "w", encoding="utf-8") as handle:
        for i in range(n - n // 2):
            if demo and rng.random() < 0.2:
                record = dict(rng.choice(demo))
                record["id"] = f"docs-{i}"
                if "text" in record:
                    handle.write(json.dumps(record) + "\n")
                    continue
            paragraphs = rng.choice(docs)
            start = rng.randrange(0, len(paragraphs))
            text = "\n\n".join(paragraphs[start:start + rng.randint(1, 12)])
            handle.write(json.dumps({"id": f"docs-{i}", "text": text}) + "\n")
    return [{"name": "code", "path": str(out / "code.jsonl"), "format": "code"},
            {"name": "docs", "path": str(out / "docs.jsonl"), "format": "text"}]


# --- students ----------------------------------------------------------------------------------

class StandInStudent:
    """Featurizes every text (character statistics + 64 hashed word counts) and applies fixed weights."""

    kind = "standin"

    def __init__(self, anchors: list[str]) -> None:
        self.anchors = anchors
        self.weights = np.random.default_rng(0).normal(size=(68, len(anchors))) / 8

    def predict(self, formats: Any, texts: list[str]) -> np.ndarray:
        features = np.zeros((len(texts), 68))
        for i, text in enumerate(texts):
            words = text.split()
            features[i, 0] = math.log1p(len(text))
            features[i, 1] = sum(c.isalpha() for c in text) / max(1, len(text))
            features[i, 2] = len(set(words)) / max(1, len(words))
            features[i, 3] = text.count("\n") / max(1, len(text)) * 40
            for word in words:
                features[i, 4 + zlib.crc32(word.encode()) % 64] += 1
            features[i, 4:] /= max(1, len(words))
        return np.clip(5 + features @ self.weights * 10, 0, 10)


def stand_in_labels(texts: list[str]) -> np.ndarray:
    return StandInStudent(ANCHORS).predict(None, texts)


class TimedStudent:
    """A student whose predict calls are timed: each appends (rows, start, end) to a per-process
    file, so the driver learns how much of the workers' time the student itself took, and when
    each worker started and stopped predicting."""

    def __init__(self, inner: Any, log_dir: Path) -> None:
        self.inner = inner
        self.anchors = inner.anchors
        self.log_dir = log_dir

    def predict(self, formats: Any, texts: list[str]) -> np.ndarray:
        started = time.time()
        out = self.inner.predict(formats, texts)
        with open(self.log_dir / f"{os.getpid()}.tsv", "a", encoding="utf-8") as handle:
            handle.write(f"{len(texts)}\t{started}\t{time.time()}\n")
        return out


class BenchModels:
    """`mira.stages.score.StageModels` with timed students (and the stand-in when asked).

    Delegates instead of subclassing, so the class exists at module level without importing
    mira at import time, and spawned workers can unpickle it.
    """

    def __init__(self, kind: str, log_dir: Path) -> None:
        self.kind = kind
        self.log_dir = log_dir

    @staticmethod
    def _real() -> Any:
        from mira.scoring.corpus_scores import StageModels

        return StageModels()

    def source_to_group(self, run: Any) -> dict[str, str]:
        return self._real().source_to_group(run)

    def load_student(self, run: Any, group: str) -> Any:
        student = StandInStudent(ANCHORS) if self.kind == "standin" else self._real().load_student(run, group)
        # The embedding model loads on the first call (seconds, once per process): a fixed cost
        # that the whole-corpus time keeps but the student's throughput should not.
        student.predict(None, ["warm up"])
        return TimedStudent(student, self.log_dir)

    def load_mask(self, run: Any, group: str) -> Any:
        return self._real().load_mask(run, group)

    def aggregate(self, *args: Any) -> np.ndarray:
        return self._real().aggregate(*args)


def student_seconds(log_dir: Path, began: float, ended: float) -> dict[str, float]:
    """Rows predicted and seconds in predict summed over every process that scored; and, averaged
    over those processes, the seconds before their first predict (start-up: spawn, imports, model
    load, first shard read) and after their last one (writing it, then idle while others finish)."""
    rows, seconds, startup, tail = 0, 0.0, [], []
    for path in log_dir.glob("*.tsv"):
        calls = [line.split("\t") for line in path.read_text(encoding="utf-8").splitlines()]
        rows += sum(int(n) for n, _, _ in calls)
        seconds += sum(float(end) - float(start) for _, start, end in calls)
        startup.append(min(float(start) for _, start, _ in calls) - began)
        tail.append(ended - max(float(end) for _, _, end in calls))
    return {"rows": rows, "seconds": seconds, "startup_s": float(np.mean(startup)) if startup else 0.0,
            "tail_s": float(np.mean(tail)) if tail else 0.0}


def prepare_upstream(config: Any, run: Any, kind: str) -> None:
    """groups.json (one group per source), students and masks, as group/distill would write them."""
    from mira.corpus.records import render
    from mira.corpus.sources import sample_source, source_infos
    from mira.io.files import atomic_write_json
    from mira.text.tokens import get_tokenizer

    infos = source_infos(run)
    groups = {f"g{i}": info.name for i, info in enumerate(infos)}
    atomic_write_json(run.groups_path, {
        "k": len(groups), "chosen_by": "config", "k_scores": {},
        "groups": [{"id": g, "label": s, "sources": [s], "within_similarity": 1.0, "pinned": False}
                   for g, s in groups.items()],
        "source_to_group": {s: g for g, s in groups.items()}})
    tokenizer = get_tokenizer(config.tokenizer.name)
    for (group, _source), info in zip(groups.items(), infos, strict=True):
        if kind == "static":
            from mira.core.config import StudentConfig
            from mira.students import train

            sample = sample_source(config, info, 96, seed=0)
            texts = [render(r, tokenizer, config.render.max_tokens, config.render.windows).text for r in sample]
            student, _ = train(StudentConfig(regressors=["ridge"]), config.embed, ANCHORS, texts,
                               [r.format for r in sample], stand_in_labels(texts), np.arange(72))
            student.save(run.path("students", group))
        cell = {a: {"masked": a == "a03", "reason": "bench" if a == "a03" else None, "weight": 1.0} for a in ANCHORS}
        atomic_write_json(run.path("students", group, "mask.json"), {"anchors": ANCHORS, "cells": {"*": cell}})
    run.mark_done("group", "bench-group")
    run.mark_done("distill", f"bench-distill-{kind}")


class WorkerPeakRss:
    """Samples VmHWM of every descendant process (Linux /proc) until stopped; keeps the largest.
    Also samples the 1-minute load average: the machine is shared, and its load explains figures."""

    def __init__(self, interval: float = 0.2) -> None:
        self.interval = interval
        self.peak_kb: dict[int, int] = {}
        self.loads: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> WorkerPeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def max_mb(self) -> float:
        return round(max(self.peak_kb.values(), default=0) / 1024, 1)

    def _descendants(self, pid: int) -> list[int]:
        out = []
        for task in Path(f"/proc/{pid}/task").glob("*"):
            try:
                children = [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                continue
            for child in children:
                out.append(child)
                out.extend(self._descendants(child))
        return out

    @property
    def mean_load(self) -> float:
        return round(float(np.mean(self.loads)), 1) if self.loads else float("nan")

    def _loop(self) -> None:
        # A spawned worker is forked before it execs Python: until then /proc shows *our* memory
        # under its pid (the 1M run once reported a 355 MB ingest worker that way, against 88 MB
        # sampled every 0.5 s over a 300k ingest). Such a child still has our command line: skip it.
        own_command = Path(f"/proc/{os.getpid()}/cmdline").read_bytes()
        while not self._stop.is_set():
            self.loads.append(os.getloadavg()[0])
            for pid in self._descendants(os.getpid()):
                try:
                    if Path(f"/proc/{pid}/cmdline").read_bytes() == own_command:
                        continue
                    status = Path(f"/proc/{pid}/status").read_text()
                except OSError:
                    continue
                for line in status.splitlines():
                    if line.startswith("VmHWM:"):
                        self.peak_kb[pid] = max(self.peak_kb.get(pid, 0), int(line.split()[1]))
            self._stop.wait(self.interval)


class DriverPeak:
    """The driver's own peak RSS over a block: the kernel's VmHWM, reset on entry (writing 5 to
    /proc/self/clear_refs, Linux), so each stage's peak is its own and not an earlier stage's.
    Also the RSS on entry: the stage's growth is peak - before. Without the reset (not Linux), the
    peak is the process's since it started."""

    def __enter__(self) -> DriverPeak:
        with contextlib.suppress(OSError):  # not Linux: the peak is the process's since it started
            Path("/proc/self/clear_refs").write_text("5")
        self.before_mb = self._status("VmRSS")
        return self

    def __exit__(self, *exc: Any) -> None:
        self.peak_mb = self._status("VmHWM")
        if not self.peak_mb:
            self.peak_mb = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)

    @staticmethod
    def _status(key: str) -> float:
        try:
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith(f"{key}:"):
                    return round(int(line.split()[1]) / 1024, 1)
        except OSError:
            pass
        return 0.0


# --- one size, in its own process --------------------------------------------------------------

def run_size(n: int, workers: int, kind: str, root: Path, batch_size: int, reuse_counts: bool = True,
             start_method: str | None = None) -> dict[str, Any]:
    from mira import api
    from mira.core.config import EngineConfig, IngestConfig, RunConfig, SourceConfig
    from mira.engines import worker_count
    from mira.run.context import StageContext
    from mira.run.rundir import RunDir
    from mira.scoring.corpus_scores import score_corpus
    from mira.stages.score import fingerprint

    # The corpus is built in a process of its own: its pool of texts is not mira's memory.
    t0 = time.time()
    built_out = subprocess.run([sys.executable, __file__, "--build", str(n), "--root", str(root)],
                               capture_output=True, text=True)
    if built_out.returncode:
        raise RuntimeError(f"building the corpus failed:\n{built_out.stderr[-2000:]}")
    sources = json.loads(built_out.stdout.strip().splitlines()[-1])
    built = time.time() - t0
    config = RunConfig(name=f"bench{n}", run_dir=str(root / f"run-{n}"), sources=[SourceConfig(**s) for s in sources],
                       ingest=IngestConfig(shard_records=5_000),
                       engine=EngineConfig(workers=workers, batch_size=batch_size,
                                           **({"start_method": start_method} if start_method else {})))
    t0 = time.time()
    with WorkerPeakRss() as ingest_rss, DriverPeak() as ingest_driver:
        api.run_one("ingest", config, force=True)
    ingest_s = time.time() - t0
    run = RunDir(Path(config.run_dir))
    prepare_upstream(config, run, kind)
    if not reuse_counts:  # the path before ingest kept token counts: score tokenizes every record
        shutil.rmtree(run.path("inventory", "tokens"))
    log_dir = root / f"student-times-{n}"
    shutil.rmtree(log_dir, ignore_errors=True)
    log_dir.mkdir(parents=True)
    models = BenchModels(kind, log_dir)
    rss_before_score = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.time()
    with WorkerPeakRss() as score_rss, DriverPeak() as score_driver:
        counts = score_corpus(config, run, force=True, models=models)
    score_end = time.time()
    score_s = score_end - t0
    # score_corpus is the stage's work without the stage wrapper (which cannot take bench models):
    # mark it done as the wrapper would, so select runs for real on these scores.
    run.mark_done("score", fingerprint(StageContext(config, run)))
    t0 = time.time()
    with DriverPeak() as select_driver:
        api.run_one("select", config, force=True)
    select_s = time.time() - t0
    # Student-alone: the rate the same workers reach doing nothing but predict (their summed
    # predict time shared over the processes that scored). whole / student-alone is then the share
    # of the workers' time the student takes; 1.0 would mean reading and rendering cost nothing.
    student = student_seconds(log_dir, score_end - score_s, score_end)
    used = worker_count(config.engine, counts["shards"])
    whole = counts["records"] / score_s
    alone = student["rows"] / (student["seconds"] / used) if student["seconds"] else float("nan")
    ingest_processes = worker_count(config.engine, counts["shards"])
    result = {"records": counts["records"], "tokens": counts["tokens"], "shards": counts["shards"],
              "build_s": round(built, 1), "ingest_s": round(ingest_s, 1), "score_s": round(score_s, 1),
              "select_s": round(select_s, 1), "ingest_docs_per_s": round(n / ingest_s, 1),
              "ingest_docs_per_s_core": round(n / ingest_s / ingest_processes, 1),
              "docs_per_s": round(whole, 1), "docs_per_s_core": round(whole / used, 1),
              "student_docs_per_s": round(alone, 1), "ratio": round(whole / alone, 2),
              "select_docs_per_s": round(n / select_s, 1),  # select runs in the driver: one core
              "startup_s": round(student["startup_s"], 1), "tail_s": round(student["tail_s"], 1),
              "score_processes": used, "ingest_processes": ingest_processes,
              "driver_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
              "driver_rss_before_score_mb": round(rss_before_score / 1024, 1),
              # Per stage: the driver's RSS on entry and its peak during the stage (VmHWM reset).
              "driver_stage_mb": {name: [peak.before_mb, peak.peak_mb] for name, peak in
                                  (("ingest", ingest_driver), ("score", score_driver), ("select", select_driver))},
              "ingest_worker_peak_rss_mb": ingest_rss.max_mb, "worker_peak_rss_mb": score_rss.max_mb,
              "load_ingest": ingest_rss.mean_load, "load_score": score_rss.mean_load}
    # The corpus and run of a size are gigabytes at 1M; nothing reads them after this.
    shutil.rmtree(root / f"data-{n}", ignore_errors=True)
    shutil.rmtree(root / f"run-{n}", ignore_errors=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000", help="comma-separated record counts, e.g. 10000,100000")
    parser.add_argument("--million", action="store_true", help="also run 1,000,000 records (long: hours on 2 cores)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--student", choices=["auto", "static", "standin"], default="auto")
    parser.add_argument("--without-token-counts", action="store_true",
                        help="score without ingest's token counts (the path before they were kept), for comparison")
    parser.add_argument("--start-method", choices=["spawn", "forkserver"], help="engine.start_method (default: mira's)")
    parser.add_argument("--root", default="/tmp/mira-bench-scale")
    parser.add_argument("--select-only", action="store_true",
                        help="select alone on synthetic score files, in memory and out of core (scale_select.py)")
    parser.add_argument("--select-sizes", default="1000000,10000000", help="record counts for --select-only")
    parser.add_argument("--select-paths", default="memory,always", help="selection.out_of_core values: never->memory")
    parser.add_argument("--chunk-records", type=int, default=250_000, help="selection.out_of_core_chunk_records")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--build", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    root = Path(args.root)
    if args.select_only:
        import scale_select  # benchmarks/ is this script's folder: first on sys.path

        paths = [{"memory": "never"}.get(p, p) for p in args.select_paths.split(",")]
        scale_select.main([int(s) for s in args.select_sizes.split(",")], root, args.chunk_records, paths)
        return
    if args.build:
        print(json.dumps(build_corpus(root / f"data-{args.build}", args.build)))
        return
    kind = args.student
    if kind == "auto":
        from mira.core.config import EmbedConfig
        from mira.text.embed import static_model_dir

        kind = "static" if (static_model_dir(EmbedConfig()) / "config.json").exists() else "standin"
    if args.child:
        print(json.dumps(run_size(args.child, args.workers, kind, root, args.batch_size,
                                  reuse_counts=not args.without_token_counts, start_method=args.start_method)))
        return
    sizes = [int(s) for s in args.sizes.split(",")] + ([1_000_000] if args.million else [])
    from mira.core.config import EngineConfig

    print(f"student: {kind}, workers: {args.workers}, batch size: {args.batch_size}, cpus: {os.cpu_count()}, "
          f"token counts from ingest: {not args.without_token_counts}, "
          f"start method: {args.start_method or EngineConfig().start_method}")
    print(f"{'records':>9} {'tokens':>12} {'ingest/s':>9} {'/core':>6} {'score/s':>8} {'/core':>6} "
          f"{'student/s':>10} {'ratio':>6} {'startup':>8} {'tail':>5} {'select/s':>9} "
          f"{'driver MB i/sc/sel':>18} {'ingest wMB':>10} {'score wMB':>10} {'load':>9}")
    results = []
    for n in sizes:
        # A fresh process per size: getrusage peaks are per process, and nothing is shared between sizes.
        command = [sys.executable, __file__, "--child", str(n), "--workers", str(args.workers),
                   "--batch-size", str(args.batch_size), "--student", kind, "--root", str(root)]
        command += ["--start-method", args.start_method] if args.start_method else []
        out = subprocess.run(command + (["--without-token-counts"] if args.without_token_counts else []),
                             capture_output=True, text=True)
        if out.returncode:
            sys.exit(f"size {n} failed (exit {out.returncode}):\n{out.stderr[-4000:]}")
        r = json.loads(out.stdout.strip().splitlines()[-1])
        results.append(r)
        driver = "/".join(str(round(peak)) for _, peak in r["driver_stage_mb"].values())
        print(f"{r['records']:>9,} {r['tokens']:>12,} {r['ingest_docs_per_s']:>9} {r['ingest_docs_per_s_core']:>6} "
              f"{r['docs_per_s']:>8} {r['docs_per_s_core']:>6} {r['student_docs_per_s']:>10} {r['ratio']:>6} "
              f"{r['startup_s']:>8} {r['tail_s']:>5} {r['select_docs_per_s']:>9} {driver:>18} "
              f"{r['ingest_worker_peak_rss_mb']:>10} {r['worker_peak_rss_mb']:>10} "
              f"{r['load_ingest']:>4}/{r['load_score']:<4}", flush=True)
        print("  " + json.dumps(r), flush=True)
    print("score/s: whole-corpus scoring (read, render, student, write), /core: per scoring process; "
          "student/s: the same processes predicting only (their summed predict time); ratio = score/s / "
          "student/s (goal >= 0.8); startup/tail: mean seconds of a scoring process before its first and after "
          "its last predict; select/s: in the driver (one core); wMB: peak RSS of a worker; load: mean "
          "1-minute load average during ingest/score (the machine's cores: " + str(os.cpu_count()) + ")")
    if len(results) > 1:
        series = {key: [r[key] for r in results]
                  for key in ("worker_peak_rss_mb", "ingest_worker_peak_rss_mb", "driver_peak_rss_mb")}
        series.update({f"driver_{stage}_peak_mb": [r["driver_stage_mb"][stage][1] for r in results]
                       for stage in ("ingest", "score", "select")})
        for key, values in series.items():
            spread = (max(values) - min(values)) / min(values) if min(values) else float("nan")
            print(f"{key}: {min(values)}..{max(values)} MB, spread {spread:.0%} "
                  f"({'within' if spread <= 0.2 else 'OUTSIDE'} +-20%)")
        # What the driver holds per record: global selection keeps a few columns of every record.
        first, last = results[0], results[-1]
        for stage in ("ingest", "score", "select"):
            grown = (last["driver_stage_mb"][stage][1] - first["driver_stage_mb"][stage][1]) * 2**20
            print(f"driver {stage}: {grown / (last['records'] - first['records']):.0f} bytes per record "
                  f"more at {last['records']:,} than at {first['records']:,} records")


if __name__ == "__main__":
    main()
