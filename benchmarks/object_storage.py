"""Reading sources from object storage: docs/s and peak memory, local files vs a local S3 server.

Starts moto's S3 server on 127.0.0.1 (a real HTTP endpoint; the test extra installs it), writes
JSONL corpora of two sizes (plain and .jsonl.zst), uploads them, and reads every shard of each
(plan + read, as ingest does) in a fresh process, printing docs/s and that process's peak RSS.
Peak RSS should not grow with the object's size: objects are streamed in blocks. A local S3
server on a shared CPU says nothing about a real object store's bandwidth; the figures compare
mira's reading paths, not networks.

    python benchmarks/object_storage.py            # 10k and 40k records (~2 KB each)
    python benchmarks/object_storage.py --sizes 5000
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import resource
import tempfile
import time
from pathlib import Path

WORDS = ("data selection rubric anchor teacher student score shard corpus token budget source group "
         "quality reliability mask record render window").split()


def write_corpus(path: Path, records: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as handle:
        for i in range(records):
            text = " ".join(rng.choice(WORDS) for _ in range(300))  # ~2 KB
            handle.write(json.dumps({"id": f"r{i}", "text": text}) + "\n")


def _read(path: str, storage: dict | None, queue: multiprocessing.Queue) -> None:
    from mira.core.config import RunConfig, SourceConfig
    from mira.io.readers import iter_shard, plan_shards

    settings = RunConfig.model_validate({"storage": storage or {}}).storage
    started = time.perf_counter()
    docs = 0
    for shard in plan_shards(SourceConfig(name="b", path=path), 5_000, 1_000_000, settings):
        docs += sum(1 for item in iter_shard(shard, 1_000_000, storage=settings) if item.data is not None)
    seconds = time.perf_counter() - started
    queue.put((docs, seconds, _peak_rss_mb()))


def _peak_rss_mb() -> float:
    # VmHWM belongs to this process image; ru_maxrss would carry over the parent's peak (it
    # survives exec), and the parent holds the S3 server's objects in memory.
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(path: str, storage: dict | None) -> tuple[int, float, float]:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    child = context.Process(target=_read, args=(path, storage, queue))
    child.start()
    result = queue.get()
    child.join()
    return result


def main() -> None:
    import logging

    import s3fs
    import zstandard
    from moto.server import ThreadedMotoServer

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 40_000])
    args = parser.parse_args()

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    storage = {"s3": {"options": {"endpoint_url": endpoint}}}
    fs = s3fs.S3FileSystem(endpoint_url=endpoint)
    fs.mkdir("bench")
    print(f"{'records':>8} {'file':>12} {'MB':>6} {'where':>5} {'docs/s':>8} {'peak RSS MB':>12}")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for size in args.sizes:
                plain = Path(tmp) / f"c{size}.jsonl"
                write_corpus(plain, size)
                packed = plain.with_suffix(".jsonl.zst")
                packed.write_bytes(zstandard.ZstdCompressor().compress(plain.read_bytes()))
                for path in (plain, packed):
                    fs.put_file(str(path), f"bench/{path.name}")
                    for where, target, settings in (("local", str(path), None),
                                                    ("s3", f"s3://bench/{path.name}", storage)):
                        docs, seconds, rss = measure(target, settings)
                        assert docs == size, (docs, size)
                        print(f"{size:>8} {path.name.split('.', 1)[1]:>12} {path.stat().st_size / 1e6:>6.1f} "
                              f"{where:>5} {docs / seconds:>8,.0f} {rss:>12.0f}")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
