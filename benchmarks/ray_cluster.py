"""Ingest + score on a Ray cluster of one node vs two nodes of this machine, against the local engine.

    .venv/bin/python benchmarks/ray_cluster.py [--records 20000] [--shard-records 2000] [--cpus 2]

Each Ray layout is a real cluster started with ``ray start`` (tests/engines/cluster.py): one node
with ``--cpus`` CPUs, then ``--cpus`` nodes of 1 CPU each joined to a head, so both layouts run the
same number of workers. The corpus is benchmarks/scale.py's (real text resampled), its students the
stand-in that featurizes every rendering (scale.py's ``standin``). Every measurement runs in a fresh
driver process joined with ``engine.address``; the time counted includes joining the cluster and
starting the actors, which is what a user waits for. On one machine two nodes cannot be faster than
one with the same CPUs: the figure is the price of the second node's bookkeeping, not a speed-up.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def measure(run_dir: Path, sources: list[dict[str, Any]], engine: dict[str, Any], shard_records: int) -> dict[str, Any]:
    """In this (fresh) process: ingest, then score with the stand-in student; seconds and docs/s."""
    from scale import BenchModels, prepare_upstream

    from mira import api
    from mira.core.config import EngineConfig, IngestConfig, RunConfig, SourceConfig
    from mira.run.rundir import RunDir
    from mira.scoring.corpus_scores import score_corpus

    config = RunConfig(name="bench-ray", run_dir=str(run_dir), sources=[SourceConfig(**s) for s in sources],
                       ingest=IngestConfig(shard_records=shard_records), engine=EngineConfig(**engine))
    t0 = time.time()
    api.run_one("ingest", config, force=True)
    ingest_s = time.time() - t0
    run = RunDir(run_dir)
    prepare_upstream(config, run, "standin")
    log_dir = run_dir.parent / f"{run_dir.name}-times"
    log_dir.mkdir(exist_ok=True)
    t0 = time.time()
    counts = score_corpus(config, run, force=True, models=BenchModels("standin", log_dir))
    score_s = time.time() - t0
    n = counts["records"]
    return {"records": n, "shards": counts["shards"], "ingest_s": round(ingest_s, 1), "score_s": round(score_s, 1),
            "ingest_docs_per_s": round(n / ingest_s), "score_docs_per_s": round(n / score_s),
            "docs_per_s": round(n / (ingest_s + score_s))}


def _child(root: Path, name: str, sources: list[dict[str, Any]], engine: dict[str, Any], shard_records: int,
           env: dict[str, str]) -> dict[str, Any]:
    spec = root / f"{name}.json"
    spec.write_text(json.dumps({"run_dir": str(root / name), "sources": sources, "engine": engine,
                                "shard_records": shard_records}))
    load = os.getloadavg()[0]
    out = subprocess.run([sys.executable, __file__, "--measure", str(spec)], capture_output=True, text=True,
                         env={**os.environ, **env})
    if out.returncode:
        sys.exit(f"{name} failed (exit {out.returncode}):\n{out.stderr[-4000:]}")
    result = {"layout": name, **json.loads(out.stdout.strip().splitlines()[-1]),
              "load": round((load + os.getloadavg()[0]) / 2, 1)}  # 1-minute load average, before and after
    print(json.dumps(result), flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--shard-records", type=int, default=2_000)
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of the one-node cluster = nodes of the other")
    parser.add_argument("--root", default="/tmp/mira-bench-ray")
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    args = parser.parse_args()
    path = os.pathsep.join(filter(None, [str(ROOT / "src"), str(ROOT), str(HERE), os.environ.get("PYTHONPATH")]))
    if args.measure:
        spec = json.loads(Path(args.measure).read_text())
        print(json.dumps(measure(Path(spec["run_dir"]), spec["sources"], spec["engine"], spec["shard_records"])))
        return
    sys.path.insert(0, str(ROOT))
    from scale import build_corpus

    from tests.engines.cluster import ray_cluster

    root = Path(args.root)
    root.mkdir(parents=True, exist_ok=True)
    sources = build_corpus(root / "corpus", args.records)
    env = {"PYTHONPATH": path}
    results = [_child(root, "local", sources, {"workers": args.cpus}, args.shard_records, env)]
    layouts = {"ray-1-node": [{"num_cpus": args.cpus}],
               f"ray-{args.cpus}-nodes": [{"num_cpus": 1} for _ in range(args.cpus)]}
    for name, nodes in layouts.items():
        started = time.time()
        with ray_cluster(*nodes, env=env) as cluster:
            up = time.time() - started
            engine = {"kind": "ray", "address": cluster.address}
            results.append({**_child(root, name, sources, engine, args.shard_records, {**env, **cluster.driver_env()}),
                            "cluster_start_s": round(up, 1)})
    print(f"{args.records:,} records, shards of {args.shard_records:,}, {os.cpu_count()} cores; "
          "docs/s over ingest + score (joining the cluster and starting actors included)")
    print(f"{'layout':>12} {'ingest s':>9} {'score s':>8} {'ingest/s':>9} {'score/s':>8} {'docs/s':>7} "
          f"{'vs local':>9} {'load':>5}")
    for r in results:
        print(f"{r['layout']:>12} {r['ingest_s']:>9} {r['score_s']:>8} {r['ingest_docs_per_s']:>9} "
              f"{r['score_docs_per_s']:>8} {r['docs_per_s']:>7} {r['docs_per_s'] / results[0]['docs_per_s']:>9.2f} "
              f"{r['load']:>5}")


if __name__ == "__main__":
    main()
