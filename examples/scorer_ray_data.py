"""A finished mira run's students inside a Ray Data pipeline: ``map_batches`` with ``mira.Scorer``.

Each actor loads the scorer once (students, masks), then scores Arrow batches; every row gets
``mira_score`` (the reliability-masked aggregate select ranks by; NaN when unscored), ``mira_group``,
``mira_tokens``, ``mira_quarantine`` (why a record could not be scored) and one ``mira_<group>/<anchor>``
column per anchor. Rows keep their own columns and their order within a batch.

    pip install "mira-select[ray]"
    python examples/scorer_ray_data.py runs/demo python_docs demo-data/python_docs.jsonl scored/ --min-score 6

The run directory must be readable by every Ray worker (a shared file system on a cluster), as for
``engine.kind: ray``. Each scoring actor holds one CPU while the dataset runs: leave the cluster a CPU
more than ``--concurrency`` for Ray's read tasks, or the read waits for a CPU the actors never free.
Records are read by Ray (``read_json``/``read_parquet``), so a line that is not JSON fails Ray's
reader; mira's own ingest quarantines it instead.
"""

from __future__ import annotations

import argparse
import math
from typing import Any


class MiraScores:
    """A Ray Data callable class: one scorer per actor, one ``score`` call per batch."""

    def __init__(self, run_dir: str, source: str, models: Any = None) -> None:
        import mira

        self.scorer = mira.Scorer.load(run_dir, models=models)
        self.source = source

    def __call__(self, batch: Any) -> Any:  # a pyarrow.Table (batch_format="pyarrow")
        scores = self.scorer.score(batch, source=self.source)
        for name in scores.column_names:
            if name not in ("id", "source"):  # the batch has its own id; the source is the one named
                batch = batch.append_column(f"mira_{name}", scores.column(name))
        return batch


def score_dataset(dataset: Any, run_dir: str, source: str, *, concurrency: int = 2, batch_size: int = 512,
                  models: Any = None) -> Any:
    """`dataset` (a ray.data.Dataset of the source's records) with mira's score columns appended."""
    return dataset.map_batches(MiraScores, fn_constructor_args=(run_dir, source, models), batch_format="pyarrow",
                               batch_size=batch_size, concurrency=concurrency)


def main() -> None:
    import ray

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run_dir")
    parser.add_argument("source", help="the run's source these records belong to (decides group and format)")
    parser.add_argument("inputs", nargs="+", help="JSONL or Parquet files of that source")
    parser.add_argument("out", help="folder for the scored Parquet files")
    parser.add_argument("--min-score", type=float, default=None, help="keep rows whose mira_score is at least this")
    parser.add_argument("--concurrency", type=int, default=2, help="scoring actors")
    args = parser.parse_args()

    read = ray.data.read_parquet if args.inputs[0].endswith(".parquet") else ray.data.read_json
    scored = score_dataset(read(args.inputs), args.run_dir, args.source, concurrency=args.concurrency)
    if args.min_score is not None:
        threshold = args.min_score
        scored = scored.filter(lambda row: not math.isnan(row["mira_score"]) and row["mira_score"] >= threshold)
    scored.write_parquet(args.out)


if __name__ == "__main__":
    main()
