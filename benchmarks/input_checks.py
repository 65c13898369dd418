"""Cost of the hostile-input checks: the shard input digest and the stricter JSON decode.

Score and select feed every input byte they read to a blake2b digest (so select notices an input
edited in place since scoring); the JSON decoder rejects NaN/Infinity and walks records that hold
a surrogate escape. This prints, on a corpus of real text (Python stdlib sources as JSONL and
Parquet), the read rate with and without the digest and the decode rate against plain json.loads,
all measured in the same run.

    python benchmarks/input_checks.py [--records 20000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import sysconfig
import tempfile
import time
from pathlib import Path


def build(root: Path, records: int) -> tuple[Path, Path]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    texts = [p.read_text(encoding="utf-8", errors="replace")[:4000]
             for p in sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py"))]
    rows = [{"id": f"r{i}", "text": texts[i % len(texts)]} for i in range(records)]
    jsonl = root / "corpus.jsonl"
    with open(jsonl, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row) + "\n")
    parquet = root / "corpus.parquet"
    pq.write_table(pa.Table.from_pylist(rows), parquet, row_group_size=5_000)
    return jsonl, parquet


def best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from mira.core.config import SourceConfig
    from mira.io.digests import shard_digest
    from mira.io.readers import decode_json_object, iter_shard, plan_shards

    with tempfile.TemporaryDirectory() as tmp:
        jsonl, parquet = build(Path(tmp), args.records)
        mb = jsonl.stat().st_size / 1e6
        print(f"corpus: {args.records:,} records, {mb:.1f} MB JSONL, best of {args.repeats}")
        for path in (jsonl, parquet):
            shards = plan_shards(SourceConfig(name="b", path=str(path)), 5_000, 1_000_000)

            def read(with_digest: bool, shards=shards) -> None:
                for shard in shards:
                    for _ in iter_shard(shard, 1_000_000, shard_digest() if with_digest else None):
                        pass

            plain = best(lambda: read(False), args.repeats)
            digested = best(lambda: read(True), args.repeats)
            print(f"{path.suffix:>9} read: {args.records / plain:>9,.0f} records/s plain, "
                  f"{args.records / digested:>9,.0f} with digest ({digested / plain:.2f}x time)")
        lines = jsonl.read_bytes().splitlines()
        plain = best(lambda: [json.loads(line) for line in lines], args.repeats)
        strict = best(lambda: [decode_json_object(line) for line in lines], args.repeats)
        print(f"JSON decode: json.loads {len(lines) / plain:,.0f} lines/s, decode_json_object "
              f"{len(lines) / strict:,.0f} lines/s ({strict / plain:.2f}x time, includes the UTF-8 decode)")


if __name__ == "__main__":
    main()
