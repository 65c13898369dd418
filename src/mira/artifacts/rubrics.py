"""Artifacts of group and discover: the source groups, the teacher's phase-1 judgments, the rubric
cards (``mira.artifacts.anchors.Anchor``), the candidates discover dropped and the hashes of generated cards."""

from __future__ import annotations

from typing import Any

from pydantic import Field, RootModel

from mira.artifacts.anchors import Anchor
from mira.run.artifact import Artifact
from mira.run.bookkeeping import Document


class GroupEntry(Document):
    id: str
    label: str
    sources: list[str]
    within_similarity: float = 1.0  # mean pairwise cosine of the member sources' mean embeddings
    record_similarity: float | None = None  # mean cosine of the sampled records to the group centroid
    pinned: bool = False


class Similarity(Document):
    sources: list[str] = Field(default_factory=list)
    matrix: list[list[float]] = Field(default_factory=list)


class GroupsFile(Document):
    """``groups.json``; stages read it as ``mira.artifacts.groups.Groups`` (``load_groups``)."""

    k: int
    chosen_by: str
    k_scores: dict[str, float] = Field(default_factory=dict)
    groups: list[GroupEntry]
    source_to_group: dict[str, str]
    similarity: Similarity = Field(default_factory=Similarity)
    empty_sources: list[str] = Field(default_factory=list)
    format_weight: float = 0.0
    embed_model: str = ""
    sample_per_source: int = 0
    sampled: dict[str, int] = Field(default_factory=dict)


class Dimension(Document):
    name: str
    part: str = "whole"
    score: float | None = None
    reason: str = ""
    expected: float | None = None  # probability-weighted score when the server gives logprobs


class Judgment(Document):
    record_id: str
    source: str
    format: str = ""
    ok: bool = True
    error: str | None = None
    dimensions: list[Dimension] = Field(default_factory=list)


class RejectedCandidate(Document):
    """A cluster of judgment points that did not become a card, with the reason."""

    name: str
    reason: str
    part: str = "whole"
    support: int = 0
    records: int = 0
    sources: dict[str, int] = Field(default_factory=dict)
    exemplar: str = ""
    points: list[str] = Field(default_factory=list)
    card: dict[str, Any] | None = None  # the teacher's card when one was written, else null


class GeneratedHashes(RootModel[dict[str, str]]):
    """group -> sha256 of the rubric as discover wrote it (a different file was edited by hand)."""


GROUPS = Artifact(
    "groups", "groups.json", "group", "which sources share a rubric, the similarity matrix, chosen k and why "
    "(see below)", model=GroupsFile)
JUDGMENTS = Artifact(
    "judgments", "judgments/{group}.jsonl", "discover", "one line per teacher judgment: record id, source, "
    "raw dimensions", kind="jsonl", model=Judgment)
RUBRIC = Artifact(
    "rubric", "rubrics/{group}.jsonl", "discover", "one anchor per line (human-editable; stages read it with "
    "`mira.artifacts.anchors.load_rubric`), see below", kind="jsonl", model=Anchor,
    not_suffixes=(".rejected.jsonl",))
RUBRIC_REJECTED = Artifact(
    "rubric_rejected", "rubrics/{group}.rejected.jsonl", "discover", "candidate anchors discover dropped, "
    "each with its reason (shown under the group's cards)", kind="jsonl", model=RejectedCandidate)
RUBRIC_BACKUP = Artifact(
    "rubric_backup", "rubrics/{group}.jsonl.bak", "discover (`--force`)", "a hand-edited rubric saved before "
    "`--force` regenerated it (kept as the user wrote it)", kind="opaque", owner="mira.stages.discover")
RUBRIC_GENERATED = Artifact(
    "rubric_generated", "rubrics/_generated.json", "discover", "the hash of each rubric as discover wrote "
    "it: a rerun keeps a hand-edited file", model=GeneratedHashes)

