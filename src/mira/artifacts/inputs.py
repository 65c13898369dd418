"""Artifacts of ingest: the inventory of the sources, per-record token counts, the quarantine."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from mira.run.artifact import Artifact
from mira.run.bookkeeping import Document


class LengthTokens(Document):
    p50: int | None = None
    p90: int | None = None
    max: int = 0
    histogram: dict[str, int] = Field(default_factory=dict)  # "<=2^k" bucket -> records


class SourceInventory(Document):
    path: str
    reader: str | None = None  # "jsonl+parquet" for a mixed folder: each file by its suffix
    format: str
    files: int = 0
    records: int
    ok: int
    quarantined: int
    quarantine_reasons: dict[str, int] = Field(default_factory=dict)  # most frequent first
    tokens: int = 0
    bytes: int = 0
    length_tokens: LengthTokens = Field(default_factory=LengthTokens)
    fields: list[str] = Field(default_factory=list)
    shards: list[dict[str, Any]] = Field(default_factory=list)  # mira.io.readers.Shard.to_dict()


class InventoryTotals(Document):
    records: int = 0
    ok: int = 0
    quarantined: int = 0
    tokens: int = 0
    sources: int = 0


class Inventory(Document):
    sources: dict[str, SourceInventory] = Field(default_factory=dict)
    totals: InventoryTotals = Field(default_factory=InventoryTotals)


class SeedSample(Document):
    complete: bool = False  # every usable record of the source is in `entries`
    entries: list[list[Any]] = Field(default_factory=list)  # [rank, shard, position, offset, locator], by rank


class SampleIndex(Document):
    """``inventory/sample/<source>.json`` (``mira.corpus.sample_index``): read only when `fingerprint` is the
    done ingest's."""

    fingerprint: str
    usable: int = 0
    seeds: dict[str, SeedSample] = Field(default_factory=dict)


class QuarantineEntry(Document):
    source: str
    locator: str
    reason: str


INVENTORY = Artifact(
    "inventory", "inventory.json", "ingest",
    "per source: reader (`jsonl+parquet` for a mixed folder: each file by its suffix), format, records/ok/"
    "quarantined, reasons, tokens, length histogram, shards (each with `duplicates`: locators of records "
    "quarantined for repeating an earlier id of the source; every stage quarantines them; `file_ids: true` where "
    "the source's files number their records each on their own, so ids are qualified by file), `ids: per file` "
    "then, `notes` (per-file ids, duplicates, an empty source) where there are any", model=Inventory)
SHARD_TOKENS = Artifact(
    "shard_tokens", "inventory/tokens/{source}/{shard}.npz", "ingest",
    "`counts`: token count of `full_text` per input item of the shard, in stream order (-1: rejected at "
    "ingest); `window_items` / `window_bytes`: for long records rendered as one windowed sequence, the UTF-8 "
    "byte spans of the kept token windows; `slice_items` / `slice_bytes` / `slice_gaps`: for very long ones cut "
    "on character slices, the kept pieces' byte spans and the elided-token estimate before each piece and after "
    "the last (-1: no mark); `meta`: JSON `{fingerprint (ingest's), tokenizer, input_digest, "
    "render: {max_tokens, windows}}`. Score reuses the counts when fingerprint and tokenizer match, the spans "
    "only for the same render settings, and scores a shard again with counting when its input digest differs",
    kind="opaque", owner="mira.corpus.shard_tokens")
SAMPLE_INDEX = Artifact(
    "sample_index", "inventory/sample/{source}.json", "ingest", "per seed of grouping/discovery/annotation, the "
    "usable records with the smallest `stable_rank` (at least `INDEX_FLOOR` = 1,024, or the largest sample a stage "
    "asks for), sorted, duplicates left out, exact up to its length (`complete`: every usable record); read only "
    "when `fingerprint` is the done ingest's", model=SampleIndex)
QUARANTINE = Artifact(
    "quarantine", "quarantine/{source}.jsonl", "ingest",
    "`{source, locator, reason}` per bad record (duplicates add `id`, `first`); a corrupt compressed file ends "
    "in one line for its unreadable rest", kind="jsonl", model=QuarantineEntry)
