"""Clustering judgment points into anchor candidates (MIRA phase 1, the pure part).

Every "name: reason" point a teacher wrote is embedded; points are clustered per record part,
near-duplicate clusters merged, clusters without enough support (points and distinct records)
dropped, and the point nearest each centre becomes the exemplar. No I/O and no teacher here: the
discover stage feeds points in and turns the surviving clusters into anchor cards.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mira.artifacts.anchors import PARTS
from mira.core.config import DiscoveryConfig

# KMeans asks for this many times a part's anchor quota; the support filter then prunes.
OVERCLUSTER = 1.5
CARD_POINTS = 8          # member points shown to the teacher per anchor card


@dataclass
class Point:
    record_id: str
    source: str
    format: str
    name: str
    part: str
    score: int
    reason: str

    @property
    def text(self) -> str:
        return f"{self.name}: {self.reason}"


@dataclass
class Cluster:
    part: str
    members: list[int]            # indices into the group's points
    centre: np.ndarray
    exemplar: int                 # index of the member nearest the centre
    support: int = 0
    records: int = 0
    sources: dict[str, int] = field(default_factory=dict)


def make_cluster(part: str, members: list[int], points: list[Point], vectors: np.ndarray) -> Cluster:
    members = sorted(members)
    centre = vectors[members].mean(axis=0)
    centre = centre / max(float(np.linalg.norm(centre)), 1e-12)
    sims = vectors[members] @ centre
    exemplar = members[int(np.argmax(sims))]  # argmax takes the first on ties: deterministic
    sources = Counter(points[i].source for i in members)
    return Cluster(part, members, centre, exemplar, len(members), len({points[i].record_id for i in members}),
                   dict(sorted(sources.items())))


def kmeans_clusters(part: str, indices: list[int], points: list[Point], vectors: np.ndarray,
                    n_clusters: int, seed: int) -> list[Cluster]:
    """KMeans over the given points (unit vectors, so Euclidean KMeans follows cosine)."""
    if not indices:
        return []
    distinct = len(np.unique(np.round(vectors[indices], 6), axis=0))
    n_clusters = max(1, min(n_clusters, distinct))
    if n_clusters == 1:
        return [make_cluster(part, indices, points, vectors)]
    from sklearn.cluster import KMeans

    labels = KMeans(n_clusters=n_clusters, n_init=10, random_state=seed).fit_predict(vectors[indices])
    groups: dict[int, list[int]] = {}
    for index, label in zip(indices, labels.tolist(), strict=True):
        groups.setdefault(label, []).append(index)
    return [make_cluster(part, m, points, vectors) for m in sorted(groups.values(), key=min)]


def merge_near_duplicates(clusters: list[Cluster], points: list[Point], vectors: np.ndarray,
                          threshold: float) -> list[Cluster]:
    """Merge the most similar pair of clusters while their centres' cosine is >= `threshold`."""
    clusters = list(clusters)
    while len(clusters) > 1:
        centres = np.stack([c.centre for c in clusters])
        sims = centres @ centres.T
        np.fill_diagonal(sims, -np.inf)
        i, j = divmod(int(np.argmax(sims)), len(clusters))
        if sims[i, j] < threshold:
            break
        merged = make_cluster(clusters[i].part, clusters[i].members + clusters[j].members, points, vectors)
        clusters = [c for n, c in enumerate(clusters) if n not in (i, j)] + [merged]
        clusters.sort(key=lambda c: min(c.members))
    return clusters


def allocate_quota(part_points: dict[str, int], total: int, min_support: int) -> dict[str, int]:
    """Share `total` anchors over parts round-robin (most points first), capped by what each part
    can support, so a Q&A rubric gets trace, answer and joint anchors rather than only the most
    talked-about part."""
    capacity = {p: n // min_support for p, n in part_points.items() if n // min_support > 0}
    order = sorted(capacity, key=lambda p: (-part_points[p], PARTS.index(p) if p in PARTS else 99, p))
    quota = dict.fromkeys(order, 0)
    left = total
    while left > 0 and any(quota[p] < capacity[p] for p in order):
        for part in order:
            if left > 0 and quota[part] < capacity[part]:
                quota[part] += 1
                left -= 1
    return {p: q for p, q in quota.items() if q > 0}


def rank_key(cluster: Cluster, points: list[Point]) -> tuple[Any, ...]:
    return (-cluster.support, -cluster.records, points[cluster.exemplar].text)


def candidate_clusters(points: list[Point], vectors: np.ndarray, dcfg: DiscoveryConfig, anchors: int | None = None,
                       ) -> tuple[dict[str, list[Cluster]], dict[str, int], list[tuple[Cluster, str]]]:
    """Per part: supported clusters, best first; the anchor quota per part (`anchors` in all, else
    ``dcfg.anchors_per_group``); dropped clusters + why."""
    by_part: dict[str, list[int]] = {}
    for i, point in enumerate(points):
        by_part.setdefault(point.part, []).append(i)
    quota = allocate_quota({p: len(ix) for p, ix in by_part.items()},
                           dcfg.anchors_per_group if anchors is None else anchors, dcfg.min_support)
    candidates: dict[str, list[Cluster]] = {}
    dropped: list[tuple[Cluster, str]] = []
    for part in sorted(by_part, key=lambda p: (PARTS.index(p) if p in PARTS else 99, p)):
        indices = by_part[part]
        n_clusters = max(1, min(math.ceil(quota.get(part, 1) * OVERCLUSTER), len(indices) // dcfg.min_support))
        clusters = kmeans_clusters(part, indices, points, vectors, n_clusters, dcfg.seed)
        clusters = merge_near_duplicates(clusters, points, vectors, dcfg.dedup_similarity)
        kept = []
        for cluster in clusters:
            if cluster.support < dcfg.min_support:
                dropped.append((cluster, f"support {cluster.support} < min_support {dcfg.min_support}"))
            elif cluster.records < dcfg.min_records:
                dropped.append((cluster, f"from {cluster.records} record(s) < min_records {dcfg.min_records}"))
            elif part not in quota:
                dropped.append((cluster, f"part {part!r} has no anchor quota"))
            else:
                kept.append(cluster)
        candidates[part] = sorted(kept, key=lambda c: rank_key(c, points))
    return candidates, quota, dropped


def card_points(cluster: Cluster, points: list[Point], vectors: np.ndarray, limit: int = CARD_POINTS) -> list[Point]:
    """Up to `limit` distinct member points, nearest to the centre first."""
    order = sorted(cluster.members, key=lambda i: (-float(vectors[i] @ cluster.centre), i))
    shown, seen = [], set()
    for i in order:
        key = points[i].text.lower()
        if key not in seen:
            seen.add(key)
            shown.append(points[i])
        if len(shown) >= limit:
            break
    return shown
