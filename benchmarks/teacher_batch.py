"""Batch mode's own cost: writing, uploading, polling and landing N requests against the fake Batch API
server, beside the direct path over the same scripted answers (both on 127.0.0.1, so the figures are
mira's overhead, not a model's). Prints requests/s of each and the state file's size.

    PYTHONPATH=src python benchmarks/teacher_batch.py --requests 5000
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from mira.run.rundir import RunDir
from mira.teacher import open_teacher
from mira.teacher.testing import ScriptedServer
from mira.teacher.testing_batch import BatchServer
from tests.teacher.teacher_helpers import answer, requests


def _time(server, config, root: Path, n: int) -> float:
    started = time.perf_counter()
    with open_teacher(config, RunDir(root), "annotate") as teacher:
        results = teacher.run(requests(n))
    assert all(r.ok for r in results)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=5000)
    n = parser.parse_args().requests
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        with ScriptedServer(lambda body: answer(7)) as server:
            direct = _time(server, server.teacher_config(concurrency=8), root / "direct", n)
        with BatchServer(lambda body: answer(7), polls=0) as server:
            config = server.teacher_config(mode="batch", batch={"poll_interval_s": 0.05})
            batch = _time(server, config, root / "batch", n)
            state = (root / "batch" / "teacher_batches" / "annotate.json").stat().st_size
    print(f"requests: {n}")
    print(f"direct (concurrency 8): {direct:.2f} s, {n / direct:,.0f} requests/s")
    print(f"batch (write, upload, poll, download, land): {batch:.2f} s, {n / batch:,.0f} requests/s")
    print(f"teacher_batches/annotate.json: {state} bytes")


if __name__ == "__main__":
    main()
