"""Sampling with ingest's sample index against a streaming pass over every record, in one run.

    .venv/bin/python benchmarks/sampling.py [--records 50000] [--sources 4] [--per-source 40]

Writes a synthetic corpus (JSONL, one plain and one gzipped source per pair, a Parquet source),
ingests it into a temporary run, then draws the same seeded samples (what annotate asks for: a
group's `--per-source` records from every source) twice: through the sample index and by streaming
every record. Prints records parsed (to_record calls), wall and CPU seconds of each, and checks the
two samples are identical. CPU seconds are the figure to compare on a shared machine.
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import tempfile
import time
from pathlib import Path


def _write(folder: Path, sources: int, records: int) -> list[dict]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = []
    per = records // sources
    for s in range(sources):
        rows = [{"id": f"s{s}-{i}", "text": f"record {i} of source {s}: " + "words " * (20 + i % 50)}
                for i in range(per)]
        if s % 3 == 2:
            path = folder / f"src{s}.parquet"
            pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=2_000)
        else:
            path = folder / (f"src{s}.jsonl.gz" if s % 3 == 1 else f"src{s}.jsonl")
            blob = "".join(json.dumps(r) + "\n" for r in rows).encode()
            path.write_bytes(gzip.compress(blob) if path.suffix == ".gz" else blob)
        out.append({"name": f"src{s}", "path": str(path)})
    return out


def main() -> int:
    from mira import api, corpus
    from mira.core.config import RunConfig
    from mira.corpus.sources import SourceInfo, sample_stratified, source_infos
    from mira.run.rundir import RunDir

    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--sources", type=int, default=4)
    parser.add_argument("--per-source", type=int, default=40)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        config = RunConfig.model_validate({"name": "bench", "run_dir": str(folder / "run"),
                                           "sources": _write(folder, args.sources, args.records),
                                           "tokenizer": {"name": "bytes4"}, "engine": {"workers": 1}})
        started = time.perf_counter()
        api.run_one("ingest", config)
        print(f"ingest (with the index): {time.perf_counter() - started:.1f} s wall")
        infos = source_infos(RunDir(folder / "run"))
        parsed = [0]
        real = corpus.to_record

        def counted(*a, **kw):
            parsed[0] += 1
            return real(*a, **kw)

        corpus.to_record = counted  # type: ignore[assignment]
        results = {}
        n = args.per_source * len(infos)
        for label, chosen in (("index", infos), ("stream", [SourceInfo(**{**i.__dict__, "run": None}) for i in infos])):
            parsed[0] = 0
            wall, cpu = time.perf_counter(), time.process_time()
            sample = sample_stratified(config, chosen, n, 0)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            results[label] = [r.locator for r in sample]
            print(f"{label:>6}: {len(sample)} records sampled, {parsed[0]:,} parsed, "
                  f"{wall:.2f} s wall, {cpu:.2f} s CPU")
        corpus.to_record = real  # type: ignore[assignment]
        assert results["index"] == results["stream"], "the index chose other records"
        print("same records: yes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
