"""The score table: the columns of every score file that rankings and selection need, in corpus order.

Selection (:mod:`mira.stages.select`) and every ranking (:mod:`mira.rankings`) read the corpus
through this one table, so they agree on the row order (source, shard, row within the shard) and
on the seeded tie-break. It owns no model call: it is a join over ``scores/``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mira.config import RunConfig
from mira.corpus import SourceInfo, stable_rank
from mira.rundir import RunDir, read_json
from mira.stages.score import scores_dir, shard_scores_path


@dataclass
class ScoreTable:
    """The columns of every score file selection needs, in corpus order (source, shard, row)."""

    run_root: Path
    sources: list[str]
    groups: list[str]
    source_idx: np.ndarray
    group_idx: np.ndarray
    tokens: np.ndarray
    score: np.ndarray
    quarantined: np.ndarray
    tie: np.ndarray  # seeded hash of the id: the deterministic tie-break
    shard_rows: list[tuple[SourceInfo, Any, int, int]]  # (source, shard, first row, end row)


def load_score_table(config: RunConfig, run: RunDir, infos: list[SourceInfo]) -> ScoreTable:
    import pyarrow.parquet as pq

    groups_of = {name: s["group"] for name, s in read_json(scores_dir(run) / "summary.json")["sources"].items()}
    group_names = sorted({g for g in groups_of.values() if g is not None})
    columns: dict[str, list[Any]] = {k: [] for k in ("source", "group", "tokens", "score", "quarantined", "tie")}
    shard_rows = []
    row = 0
    for s_index, info in enumerate(infos):
        group = groups_of.get(info.name)
        g_index = group_names.index(group) if group is not None else -1
        for shard in info.shards:
            table = pq.read_table(shard_scores_path(run, shard), columns=["id", "tokens", "score", "quarantine"])
            n = table.num_rows
            columns["source"].append(np.full(n, s_index, dtype=np.int32))
            columns["group"].append(np.full(n, g_index, dtype=np.int32))
            columns["tokens"].append(table.column("tokens").to_numpy().astype(np.int64))
            columns["score"].append(table.column("score").to_numpy().astype(np.float64))
            columns["quarantined"].append(table.column("quarantine").is_valid().to_numpy(zero_copy_only=False))
            seed = config.selection.seed
            columns["tie"].append(np.array([stable_rank(seed, rid) for rid in table.column("id").to_pylist()],
                                           dtype=np.uint64))
            shard_rows.append((info, shard, row, row + n))
            row += n

    def cat(name: str, dtype: Any) -> np.ndarray:
        return np.concatenate(columns[name]) if columns[name] else np.zeros(0, dtype=dtype)

    return ScoreTable(run.root, [i.name for i in infos], group_names, cat("source", np.int32), cat("group", np.int32),
                      cat("tokens", np.int64), cat("score", np.float64), cat("quarantined", bool),
                      cat("tie", np.uint64), shard_rows)
