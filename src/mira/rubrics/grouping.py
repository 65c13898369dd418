"""Grouping sources by what their records look like (embedding means clustered), so similar sources share a rubric."""

from __future__ import annotations

import logging
import re
from collections import Counter

import numpy as np

from mira.core.config import ConfigError, RunConfig

log = logging.getLogger(__name__)
VERSION = "group-v2"  # v2: content-only default, k=1 for near-identical sources
GROUP_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
AUTO_ID_RE = re.compile(r"^g\d+$")




# --- pure helpers (no I/O; tested directly) --------------------------------------------------------

def source_means(vectors: np.ndarray, owners: list[int], n_sources: int) -> np.ndarray:
    """Unit-normalised mean embedding per source; `owners[i]` is the source index of row i."""
    means = np.zeros((n_sources, vectors.shape[1]), dtype=np.float64)
    counts = np.zeros(n_sources)
    for row, owner in zip(vectors, owners, strict=True):
        means[owner] += row
        counts[owner] += 1
    means /= np.maximum(counts, 1)[:, None]
    return means / np.maximum(np.linalg.norm(means, axis=1, keepdims=True), 1e-12)


def with_format(means: np.ndarray, formats: list[str], weight: float) -> np.ndarray:
    """Append a scaled one-hot of each source's record format, then renormalise.

    An option (``grouping.format_weight``, default 0: content only, as in the paper). Content
    embeddings alone group by *topic*: on the demo corpus Python code lands with Python prose docs
    and C headers with man pages. Where formats must not share a rubric (a trace, a tool call, a
    file), a weight makes the format part of the grouping signal: same-format sources move to
    (cos + w^2) / (1 + w^2), others to cos / (1 + w^2). Too strong, it groups by format alone
    (w=1.5: 5 content clusters x 3 formats come out as the 3 formats).
    """
    if weight <= 0:
        return means
    kinds = sorted(set(formats))
    onehot = np.zeros((len(formats), len(kinds)))
    for row, fmt in enumerate(formats):
        onehot[row, kinds.index(fmt)] = weight
    joined = np.hstack([means, onehot])
    return joined / np.maximum(np.linalg.norm(joined, axis=1, keepdims=True), 1e-12)


def choose_k(means: np.ndarray, k: int | None, k_min: int, k_max: int, merge_similarity: float,
             seed: int, single_group_similarity: float = 1.0,
             weak_silhouette: float = -1.0) -> tuple[np.ndarray, int, str, dict[str, float]]:
    """Cluster `means` (one row per source): (labels, k, chosen_by, silhouette score per tried k).

    ``chosen_by`` is ``near-identical`` when the single-group rule (module docstring) applied.
    """
    n = len(means)
    if n == 0:
        return np.zeros(0, dtype=int), 0, "none", {}
    if k is not None:
        if k > n:
            raise ConfigError(f"grouping.k={k} but only {n} source(s) are clustered; "
                              f"set grouping.k <= {n} or leave it unset")
        return _kmeans(means, k, seed), k, "config", {}
    lo, hi = max(2, k_min), min(k_max, n - 1)
    if lo > hi:
        # Silhouette needs 2 <= k <= n-1, so with one or two sources it cannot choose: keep them
        # together when they look alike, apart otherwise.
        if n == 1:
            return np.zeros(1, dtype=int), 1, "single source", {}
        if n == 2:
            together = float(means[0] @ means[1]) >= merge_similarity
            labels = np.array([0, 0] if together else [0, 1])
            return labels, len(set(labels.tolist())), "similarity", {}
        k_forced = min(max(k_min, 1), n)
        return _kmeans(means, k_forced, seed), k_forced, "k_min", {}
    from sklearn.metrics import silhouette_score

    scores: dict[str, float] = {}
    best: tuple[float, int, np.ndarray] | None = None
    for candidate in range(lo, hi + 1):
        labels = _kmeans(means, candidate, seed)
        if len(set(labels.tolist())) < 2:  # identical sources: KMeans found fewer clusters
            score = -1.0
        else:
            score = float(silhouette_score(means, labels, metric="cosine"))
        scores[str(candidate)] = round(score, 4)
        # Strictly better only: ties go to the smaller k (fewer rubrics to discover).
        if best is None or score > best[0] + 1e-9:
            best = (score, candidate, labels)
    assert best is not None
    if k_min <= 1 and best[0] < weak_silhouette:
        sim = means @ means.T
        if float(sim[np.triu_indices(n, 1)].min()) >= single_group_similarity:
            return np.zeros(n, dtype=int), 1, "near-identical", scores
    return best[2], best[1], "silhouette", scores


def _kmeans(means: np.ndarray, k: int, seed: int) -> np.ndarray:
    if k == 1:
        return np.zeros(len(means), dtype=int)
    from sklearn.cluster import KMeans

    return KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(means).astype(int)


def mean_pairwise(sim: np.ndarray, idx: list[int]) -> float:
    if len(idx) < 2:
        return 1.0
    block = sim[np.ix_(idx, idx)]
    return float((block.sum() - np.trace(block)) / (len(idx) * (len(idx) - 1)))


def group_label(sources: list[str], formats: dict[str, str]) -> str:
    kinds = Counter(formats.get(s, "?") for s in sources)
    kind = "+".join(sorted(kinds, key=lambda f: (-kinds[f], f)))
    shown = ", ".join(sources[:4]) + (f" (+{len(sources) - 4})" if len(sources) > 4 else "")
    return f"{kind}: {shown}"


def assign_ids(labels: list[int], names: list[str]) -> dict[str, str]:
    """Source -> "g<i>", numbering clusters by their first source name (stable across reruns)."""
    members: dict[int, list[str]] = {}
    for label, name in zip(labels, names, strict=True):
        members.setdefault(label, []).append(name)
    ordered = sorted(members.values(), key=lambda m: min(m))
    return {name: f"g{i}" for i, m in enumerate(ordered) for name in m}


# --- the stage --------------------------------------------------------------------------------------

def check_pins(config: RunConfig) -> dict[str, str]:
    pins = {s.name: s.group for s in config.sources if s.group}
    for source, name in pins.items():
        if not GROUP_NAME_RE.match(name):
            raise ConfigError(f"source {source!r}: group name {name!r} must be letters, digits, '_', '.' or '-'")
        if AUTO_ID_RE.match(name):
            raise ConfigError(f"source {source!r}: group name {name!r} clashes with automatic group ids "
                              "(g0, g1, ...); choose another name")
    return pins




