"""The report's pass over the score shards: one streaming, column-pruned read per source into a
histogram and a seeded sample (never the whole table in memory), plus the warnings drawn from it."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np


class ScoreShards(Protocol):
    """What the pass reads of a run (:class:`mira.report.artifacts.Artifacts` provides it)."""

    @property
    def sources(self) -> list[str]: ...
    @property
    def inventory(self) -> dict[str, Any] | None: ...
    def score_files(self, source: str) -> list[Path]: ...
    def aggregates(self, table: Any) -> np.ndarray: ...

SCORE_BINS = np.linspace(0.0, 10.0, 41)
SAMPLE_PER_SOURCE = 1_500
# A group's aggregate is flagged (near-)constant when the spread between its 10th and 90th
# percentile is below one histogram bin, or it takes fewer than MIN_DISTINCT values: selection
# inside the group is then decided by the tie-break, not by the score.
CONSTANT_SPREAD = 0.25
MIN_DISTINCT = 5
# ... and flagged as mostly explained by length from this |Spearman(score, tokens)| ("strong").
LENGTH_RHO = 0.6


@dataclass
class SourceScores:
    """Streaming summary of one source's score shards."""

    rows: int = 0
    scored: int = 0
    unscored: int = 0
    quarantined: int = 0
    hist: np.ndarray = field(default_factory=lambda: np.zeros(len(SCORE_BINS) - 1, dtype=np.int64))
    sample_tokens: np.ndarray = field(default_factory=lambda: np.zeros(0))
    sample_scores: np.ndarray = field(default_factory=lambda: np.zeros(0))
    total: float = 0.0

    @property
    def mean(self) -> float:
        return self.total / self.scored if self.scored else math.nan

    def quantile(self, q: float) -> float:
        """Approximate quantile from the histogram (bin resolution 0.25)."""
        if not self.scored:
            return math.nan
        cum = np.cumsum(self.hist)
        idx = int(np.searchsorted(cum, q * cum[-1]))
        return float((SCORE_BINS[idx] + SCORE_BINS[idx + 1]) / 2)


def stream_scores(a: ScoreShards) -> dict[str, SourceScores]:
    """One streaming pass over every score shard: histogram + seeded sample per source."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    result: dict[str, SourceScores] = {}
    for source in a.sources:
        files = a.score_files(source)
        if not files:
            continue
        stats = SourceScores()
        kept_tokens: list[np.ndarray] = []
        kept_scores: list[np.ndarray] = []
        rng = np.random.default_rng(_seed(source))
        # Bernoulli sample sized so that about SAMPLE_PER_SOURCE rows survive overall.
        rate = min(1.0, SAMPLE_PER_SOURCE / max(1, _expected_rows(a, source)))
        for path in files:
            handle = pq.ParquetFile(path)
            columns = [c for c in handle.schema_arrow.names if c not in ("id", "locator")]
            for batch in handle.iter_batches(columns=columns, batch_size=65_536):
                data = batch.to_pydict()
                n = batch.num_rows
                score = a.aggregates(pa.Table.from_batches([batch]))
                tokens = np.array([0 if v is None else v for v in data.get("tokens", [0] * n)], float)
                quarantined = np.array([q is not None for q in data.get("quarantine", [None] * n)])
                ok = ~np.isnan(score)
                stats.rows += n
                stats.quarantined += int(quarantined.sum())
                stats.unscored += int((~ok & ~quarantined).sum())
                stats.scored += int(ok.sum())
                stats.total += float(score[ok].sum())
                stats.hist += np.histogram(np.clip(score[ok], 0, 10), SCORE_BINS)[0]
                pick = ok & (rng.random(n) < rate)
                kept_tokens.append(tokens[pick])
                kept_scores.append(score[pick])
        stats.sample_tokens = np.concatenate(kept_tokens) if kept_tokens else np.zeros(0)
        stats.sample_scores = np.concatenate(kept_scores) if kept_scores else np.zeros(0)
        result[source] = stats
    return result


def rows_with_ids(a: ScoreShards, source: str, ids: set[str], columns: list[str] | None) -> dict[str, dict[str, Any]]:
    """Rows of this source's score shards whose id is in `ids` (a small set: labelled records);
    `columns` None: every column."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    found: dict[str, dict[str, Any]] = {}
    wanted = pa.array(sorted(ids), pa.string())
    for path in a.score_files(source):
        handle = pq.ParquetFile(path)
        names = set(handle.schema_arrow.names)
        if "id" not in names:
            continue
        cols = ["id"] + [c for c in (columns if columns is not None else sorted(names)) if c in names and c != "id"]
        for batch in handle.iter_batches(columns=cols, batch_size=65_536):
            table = pa.Table.from_batches([batch])
            hits = table.filter(pc.is_in(table["id"], value_set=wanted))
            for row in hits.to_pylist():
                found[str(row["id"])] = row
    return found


def aggregate_warnings(scores: np.ndarray, tokens: np.ndarray) -> list[str]:
    """Plain-text warnings about one group's aggregate scores (a sample of scored records).

    (Near-)constant: p90 - p10 < CONSTANT_SPREAD or fewer than MIN_DISTINCT distinct values.
    Length-driven: |Spearman(score, tokens)| >= LENGTH_RHO.
    """
    from mira.core.stats import spearman

    scores, tokens = np.asarray(scores, float), np.asarray(tokens, float)
    keep = ~np.isnan(scores)
    scores, tokens = scores[keep], tokens[keep]
    if len(scores) < 2:
        return []
    warnings = []
    p10, p90 = np.percentile(scores, [10, 90])
    distinct = len(np.unique(np.round(scores, 6)))
    if p90 - p10 < CONSTANT_SPREAD or distinct < MIN_DISTINCT:
        warnings.append(f"the aggregate is (near-)constant: p10 {p10:.2f}, p90 {p90:.2f}, {distinct} distinct "
                        f"value(s) in {len(scores)} sampled records; selection inside this group is decided by "
                        "the tie-break, not by quality")
    rho = spearman(tokens, scores)
    if rho == rho and abs(rho) >= LENGTH_RHO:
        warnings.append(f"the aggregate is mostly explained by length: Spearman(score, tokens) = {rho:.2f} "
                        f"(|ρ| >= {LENGTH_RHO}); selection here is close to a length filter")
    return warnings


def _seed(text: str) -> int:
    import hashlib

    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=4).digest(), "big")


def _expected_rows(a: ScoreShards, source: str) -> int:
    info = (a.inventory or {}).get("sources", {}).get(source)
    if info and info.get("records"):
        return int(info["records"])
    import pyarrow.parquet as pq

    return sum(pq.ParquetFile(p).metadata.num_rows for p in a.score_files(source))
