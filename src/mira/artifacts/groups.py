"""Source groups as later stages see them: which sources share a rubric.

``groups.json`` is written by :mod:`mira.stages.group`; every later stage reads it through
:func:`load_groups`, never by parsing the file itself, so the file format has one owner.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mira.run.rundir import RunDir


@dataclass
class Group:
    id: str
    label: str
    sources: list[str]
    # Mean pairwise cosine of the member sources' mean embeddings (1.0 for a single source).
    within_similarity: float
    # Mean cosine of the group's sampled records to the group centroid: how alike its records are.
    record_similarity: float | None
    pinned: bool


@dataclass
class Groups:
    k: int
    chosen_by: str
    k_scores: dict[str, float]
    groups: list[Group]
    source_to_group: dict[str, str]
    similarity_sources: list[str] = field(default_factory=list)
    similarity: list[list[float]] = field(default_factory=list)
    # Sources with no usable record: they cannot be embedded and belong to no group.
    empty_sources: list[str] = field(default_factory=list)
    embed_model: str = ""
    sample_per_source: int = 0

    @property
    def ids(self) -> list[str]:
        return [g.id for g in self.groups]

    def group(self, group_id: str) -> Group:
        for group in self.groups:
            if group.id == group_id:
                return group
        raise KeyError(f"unknown group {group_id!r}; groups are: {', '.join(self.ids)}")

    def group_of(self, source: str) -> str | None:
        return self.source_to_group.get(source)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Groups:
        groups = [Group(g["id"], g.get("label", g["id"]), list(g["sources"]), float(g.get("within_similarity", 1.0)),
                        g.get("record_similarity"), bool(g.get("pinned", False))) for g in data["groups"]]
        similarity = data.get("similarity") or {}
        return cls(k=int(data.get("k", 0)), chosen_by=str(data.get("chosen_by", "")),
                   k_scores={str(k): float(v) for k, v in (data.get("k_scores") or {}).items()},
                   groups=groups, source_to_group=dict(data["source_to_group"]),
                   similarity_sources=list(similarity.get("sources", [])),
                   similarity=[list(row) for row in similarity.get("matrix", [])],
                   empty_sources=list(data.get("empty_sources", [])),
                   embed_model=str(data.get("embed_model", "")),
                   sample_per_source=int(data.get("sample_per_source", 0)))


def load_groups(run: RunDir) -> Groups:
    """The groups of a run; raises StageNotReady (one line) if `mira group` has not finished."""
    from mira.artifacts.rubrics import GROUPS
    from mira.run.artifact import dump

    run.require("group")
    return Groups.from_dict(dump(GROUPS.load(run)))
