"""Artifacts of score: one table of per-anchor student scores per input shard, its done marker,
and the summary select joins on. There is no aggregate column (score-v2): the mask and the
aggregator are applied at join time by ``mira.scoring.table``."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from mira.run.artifact import Artifact
from mira.run.bookkeeping import Document

# Columns of a score shard that are not anchors; "score" is the aggregate of score-v1 files,
# which the report still reads.
FIXED_COLUMNS = ("id", "locator", "source", "group", "tokens", "score", "quarantine")


def score_fixed() -> Any:
    """Plus one float64 column per anchor (NaN for a quarantined record)."""
    import pyarrow as pa

    return pa.schema([pa.field("id", pa.string()), pa.field("locator", pa.string()), pa.field("source", pa.string()),
                      pa.field("group", pa.string()), pa.field("tokens", pa.int64()),
                      pa.field("quarantine", pa.string())])


def anchor_columns(names: list[str]) -> list[str]:
    return [n for n in names if n not in FIXED_COLUMNS]


class ShardDone(Document):
    """``scores/<source>/<shard>.done.json``: no timestamps, so a resumed run is byte-identical."""

    fingerprint: str
    source: str | None = None
    shard: str | None = None
    group: str | None = None
    anchors: list[str] = Field(default_factory=list)
    # "sha256:<hex>" of the shard's input bytes as read (untagged blake2b before); select checks it
    input_digest: str | None = None
    records: int = 0
    scored: int = 0
    quarantined: int = 0
    tokens: int = 0


class SourceScoreCounts(Document):
    group: str | None = None
    shards: int = 0
    records: int = 0
    scored: int = 0
    quarantined: int = 0
    tokens: int = 0


class GroupAnchors(Document):
    anchors: list[str] = Field(default_factory=list)


class ScoresSummary(Document):
    fingerprint: str
    sources: dict[str, SourceScoreCounts] = Field(default_factory=dict)
    groups: dict[str, GroupAnchors] = Field(default_factory=dict)


SCORES = Artifact(
    "scores", "scores/{source}/{shard}.parquet", "score", "one row per input record: per-anchor student scores, "
    "no aggregate, see below", kind="parquet", arrow=score_fixed, compression="zstd")
SCORES_DONE = Artifact(
    "scores_done", "scores/{source}/{shard}.done.json", "score", "`{fingerprint, records, scored, quarantined, "
    "tokens, anchors, input_digest}` of one shard", model=ShardDone)
SCORES_SUMMARY = Artifact(
    "scores_summary", "scores/summary.json", "score", "per source: group, shards and counts; per group: anchors",
    model=ScoresSummary)
