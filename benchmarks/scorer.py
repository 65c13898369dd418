"""mira.Scorer on a finished run: the same numbers as its score files, and how fast it scores.

For every source of the run, its records are read as ingest reads them (the inventory's shards:
dicts, with the unreadable lines left out, since they are no records to pass), scored in batches
of ``--batch`` through ``mira.Scorer.load(run).score(..., source=...)``, and compared with
``scores/<source>/*.parquet`` (tokens, quarantine reason, every anchor bit for bit) and with the
key the current selection ranked each record by (its ``_decisions`` files). Prints a line per
source and the docs/s of scoring alone (reading excluded). The run directory is only read.

    python benchmarks/scorer.py runs/demo
    python benchmarks/scorer.py runs/demo --batch 64
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--batch", type=int, default=512, help="records per score() call")
    args = parser.parse_args()

    import mira
    from mira.artifacts import CATALOGUE
    from mira.corpus.sources import source_infos
    from mira.io.readers import iter_shard
    from mira.run.rundir import RunDir
    from mira.selection.named import current_selection

    run = RunDir(args.run_dir)
    started = time.perf_counter()
    scorer = mira.Scorer.load(run.root)
    print(f"load: {time.perf_counter() - started:.2f} s ({len(scorer.sources)} sources, {len(scorer.groups)} groups)")
    selection = current_selection(run)
    total, seconds, mismatched = 0, 0.0, 0
    for info in source_infos(run):
        readable: list[int] = []
        records: list[dict] = []
        position = 0
        for shard in info.shards:
            for raw in iter_shard(shard, scorer.config.ingest.max_record_bytes, storage=scorer.config.storage):
                if raw.data is not None:
                    readable.append(position)
                    records.append(raw.data)
                position += 1
        t0 = time.perf_counter()
        parts = [scorer.score(records[i:i + args.batch], source=info.name) for i in range(0, len(records), args.batch)]
        seconds += time.perf_counter() - t0
        result = pa.concat_tables(parts) if parts else scorer.schema().empty_table()
        files = [run.path("scores", info.name, f"{s.name}.parquet") for s in info.shards]
        expected = pa.concat_tables(pq.read_table(p) for p in files).take(readable)
        group = info.name and scorer.sources[info.name].group
        same = (result.column("tokens").to_pylist() == expected.column("tokens").to_pylist()
                and result.column("quarantine").to_pylist() == expected.column("quarantine").to_pylist()
                and all(result.column(f"{group}/{a}").to_numpy().tobytes() == expected.column(a).to_numpy().tobytes()
                        for a in scorer.anchors.get(str(group), [])))
        keys = None
        if selection is not None:
            decisions = pa.concat_tables(CATALOGUE["decisions"].load(run, name=selection.name, source=info.name,
                                                                     shard=s.name) for s in info.shards)
            keys = decisions.column("key").to_numpy(zero_copy_only=False).astype(float)[readable]
            same = same and result.column("score").to_numpy().tobytes() == keys.tobytes()
        mismatched += not same
        total += len(records)
        scored = int(np.isfinite(result.column("score").to_numpy()).sum())
        print(f"{info.name:>16}: {len(records):>7,} records, {scored:>7,} with an aggregate, "
              f"{'same as scores/' + (' and the selection keys' if keys is not None else '') if same else 'DIFFERENT'}")
    print(f"scored {total:,} records in {seconds:.2f} s: {total / max(seconds, 1e-9):,.0f} docs/s "
          f"(batch {args.batch}); {'all sources identical' if not mismatched else f'{mismatched} sources differ'}")
    return 1 if mismatched else 0


if __name__ == "__main__":
    sys.exit(main())
