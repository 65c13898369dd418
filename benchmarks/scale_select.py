"""Select at 1M and 10M records: the driver's peak RSS and records/s, in memory and out of core.

    .venv/bin/python benchmarks/scale.py --select-only [--select-sizes 1000000,10000000]
        [--chunk-records 1000000]

Running ingest and score at 10M records takes hours on 2 cores, so this writes what score leaves
(score Parquet files of 5,000 rows, ``scores/summary.json``, each group's ``mask.json``) directly:
4 sources in 2 groups, 4 anchors, ~2% quarantined records and one source whose anchors are all
masked (its records fall back to the seeded random draw), scores rounded to 0.01 (ties).

What is measured is select's deciding and everything it reads per record: the score table (or
its pieces), the ranking, every unit's cutoff, the summary's counts and one read of every shard's
decisions (what the writer gets). Writing the kept records is not: it reads the raw corpus, which
this synthetic run has none of, shard by shard in the same bounded memory on both paths.

Each (size, path) runs in a fresh child process; the files are written by another one, so none
of their memory is the driver's. Peak RSS is the kernel's VmHWM, reset before the stage (as in
scale.py); "grown" is the peak minus the RSS on entry (imports and the synthetic run's metadata).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

SHARD = 5_000
SOURCES = {"code": "g0", "docs": "g0", "chat": "g1", "masked": "g1"}
SHARE = {"code": 0.4, "docs": 0.3, "chat": 0.2, "masked": 0.1}
ANCHORS = ["a00", "a01", "a02", "a03"]


def synthesize(root: Path, n: int, seed: int = 0) -> None:
    """A run directory holding what `mira score` leaves for `n` records (see the module docstring)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from mira.io.files import atomic_write_json

    rng = np.random.default_rng(seed)
    shutil.rmtree(root, ignore_errors=True)
    inventory: dict[str, Any] = {"sources": {}}
    summary: dict[str, Any] = {"fingerprint": "synthetic", "sources": {}, "groups": {}}
    for source, group in SOURCES.items():
        records = int(n * SHARE[source])
        shards, tokens_total = [], 0
        for index, start in enumerate(range(0, records, SHARD)):
            rows = min(SHARD, records - start)
            ids = [f"{source}-{i}" for i in range(start, start + rows)]
            tokens = rng.integers(20, 2000, rows)
            quarantine = np.where(rng.random(rows) < 0.02, "too short", None)
            columns = {"id": ids, "locator": ids, "source": [source] * rows, "group": [group] * rows,
                       "tokens": pa.array(tokens, pa.int64()), "quarantine": pa.array(quarantine, pa.string())}
            for j, anchor in enumerate(ANCHORS):
                columns[anchor] = pa.array(np.round(rng.normal(5 + j / 4, 1.5, rows), 2))
            path = root / "scores" / source / f"{index:05d}.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(pa.table(columns), path, compression="zstd")
            shards.append({"source": source, "index": index, "reader": "jsonl", "files": [f"{source}.jsonl"]})
            tokens_total += int(tokens.sum())
        inventory["sources"][source] = {"format": "text", "shards": shards, "records": records, "ok": records,
                                        "tokens": tokens_total}
        summary["sources"][source] = {"group": group, "shards": len(shards), "records": records, "scored": records,
                                      "quarantined": 0, "tokens": tokens_total}
    for group in sorted(set(SOURCES.values())):
        summary["groups"][group] = {"anchors": ANCHORS}
        cells: dict[str, Any] = {"*": {a: {"masked": False, "reason": None, "weight": 1.0} for a in ANCHORS}}
        for source in (s for s, g in SOURCES.items() if g == group):
            masked = source == "masked"
            cells[source] = {a: {"masked": masked, "reason": "synthetic" if masked else None, "weight": 1.0}
                             for a in ANCHORS}
        atomic_write_json(root / "students" / group / "mask.json", {"anchors": ANCHORS, "cells": cells})
    atomic_write_json(root / "scores" / "summary.json", summary)
    atomic_write_json(root / "inventory.json", inventory)


def infos(root: Path) -> list[Any]:
    from mira.corpus.sources import SourceInfo
    from mira.io.readers import Shard
    from mira.run.rundir import RunDir

    inventory = json.loads((root / "inventory.json").read_text())
    return [SourceInfo(name, s["format"], [Shard.from_dict(d) for d in s["shards"]], s["records"], s["ok"],
                       s["tokens"], [], RunDir(root)) for name, s in inventory["sources"].items()]


def measure(root: Path, how: str, chunk_records: int) -> dict[str, Any]:
    """Decide, summarize and read back every shard's decisions, as select does, in this process."""
    from scale import DriverPeak  # benchmarks/ is this script's folder: first on sys.path

    from mira.core.config import RunConfig, SelectionConfig, SourceConfig
    from mira.run.rundir import RunDir
    from mira.selection.build import decide_selection
    from mira.selection.out_of_core import OutOfCore
    from mira.selection.summary import summarize

    config = RunConfig(name="bench", run_dir=str(root), sources=[SourceConfig(name=s, path=f"{s}.jsonl")
                                                                  for s in SOURCES],
                       selection=SelectionConfig(out_of_core=how, out_of_core_chunk_records=chunk_records))
    run, found = RunDir(root), infos(root)
    # What select imports on first use, imported before the stage: its peak is then its data's.
    import pyarrow.parquet  # noqa: F401

    import mira.scoring.anchor_scale  # noqa: F401
    import mira.scoring.reliability  # noqa: F401
    import mira.selection.rankings.mira_score  # noqa: F401
    t0 = time.time()
    with DriverPeak() as peak:
        decided = decide_selection(config, run, found, "bench")
        summary = summarize(config, decided)
        kept = sum(int(d.kept.sum()) for _, _, d in decided.shards())
        spill = sum(p.stat().st_size for p in decided.folder.iterdir()) if isinstance(decided, OutOfCore) else 0
        if isinstance(decided, OutOfCore):
            decided.close()
    seconds = time.time() - t0
    records = summary["totals"]["records_in"]
    assert kept == summary["totals"]["kept"]
    return {"how": how, "records": records, "seconds": round(seconds, 1), "records_per_s": round(records / seconds),
            "peak_mb": peak.peak_mb, "before_mb": peak.before_mb, "grown_mb": round(peak.peak_mb - peak.before_mb, 1),
            "spill_mb_after_decide": round(spill / 2**20, 1), "kept_tokens": summary["totals"]["kept_tokens"],
            "units": {name: unit["cutoff"] for name, unit in summary["units"].items()}}


def main(sizes: list[int], root: Path, chunk_records: int, paths: list[str]) -> None:
    print(f"select only: sizes {sizes}, out_of_core_chunk_records {chunk_records:,}, cpus {os.cpu_count()}, "
          f"load {os.getloadavg()[0]:.1f}", flush=True)
    results = []
    for n in sizes:
        folder = root / f"select-{n}"
        t0 = time.time()
        subprocess.run([sys.executable, __file__, "--synthesize", str(n), str(folder)],
                       check=True)
        print(f"{n:,} records synthesized in {time.time() - t0:.0f} s "
              f"({sum(p.stat().st_size for p in folder.rglob('*') if p.is_file()) / 2**20:.0f} MB)", flush=True)
        for how in paths:
            out = subprocess.run([sys.executable, __file__, "--measure", how, str(folder),
                                  str(chunk_records)], capture_output=True, text=True)
            if out.returncode:
                sys.exit(f"{how} at {n} failed:\n{out.stderr[-3000:]}")
            result = json.loads(out.stdout.strip().splitlines()[-1])
            results.append(result)
            print(f"  {how:>6}: {result['records']:>11,} records  {result['records_per_s']:>8,} records/s  "
                  f"driver peak {result['peak_mb']:>7} MB (grown {result['grown_mb']} MB over "
                  f"{result['before_mb']} on entry)  spill {result['spill_mb_after_decide']} MB", flush=True)
        shutil.rmtree(folder, ignore_errors=True)
    for how in paths:
        mine = [r for r in results if r["how"] == how]
        if len(mine) > 1:
            low, high = min(r["peak_mb"] for r in mine), max(r["peak_mb"] for r in mine)
            print(f"{how}: driver peak {low}..{high} MB, spread {(high - low) / low:.0%} "
                  f"({'within' if (high - low) / low <= 0.2 else 'OUTSIDE'} +-20%)")
    by_size: dict[int, list[dict[str, Any]]] = {}
    for r in results:
        by_size.setdefault(r["records"], []).append(r)
    for n, pair in by_size.items():  # both paths must agree on what they kept
        if len({json.dumps([r["kept_tokens"], r["units"]]) for r in pair}) > 1:
            sys.exit(f"the paths disagree at {n:,} records: {pair}")
    print(json.dumps(results))


if __name__ == "__main__":
    if sys.argv[1] == "--synthesize":
        synthesize(Path(sys.argv[3]), int(sys.argv[2]))
    elif sys.argv[1] == "--measure":
        print(json.dumps(measure(Path(sys.argv[3]), sys.argv[2], int(sys.argv[4]))))
