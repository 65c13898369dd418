"""Group: k selection (pure) and the stage on tiny fixtures of real text (Python stdlib code, C
headers, Debian changelogs, fortunes, man pages)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mira.core.config import ConfigError, RunConfig
from mira.rubrics.grouping import assign_ids, choose_k, source_means

DATA = Path(__file__).resolve().parents[1] / "data" / "group_discover"


# --- pure -----------------------------------------------------------------------------------------

def _blobs(sizes: list[int], dim: int = 16, noise: float = 0.05, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    rows = []
    for size in sizes:
        centre = rng.normal(size=dim)
        rows += [centre + rng.normal(scale=noise * np.linalg.norm(centre), size=dim) for _ in range(size)]
    rows = np.array(rows)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_silhouette_finds_the_natural_k():
    means = _blobs([3, 2, 3])
    labels, k, chosen_by, scores = choose_k(means, None, 2, 6, 0.45, seed=0)
    assert (k, chosen_by) == (3, "silhouette")
    assert set(scores) == {"2", "3", "4", "5", "6"}
    assert scores["3"] == max(scores.values())
    assert len(set(labels[:3])) == 1 and len(set(labels[3:5])) == 1 and labels[0] != labels[3]


def test_configured_k_and_edge_cases():
    means = _blobs([2, 2])
    assert choose_k(means, 2, 2, 6, 0.45, 0)[1:3] == (2, "config")
    with pytest.raises(ConfigError, match="grouping.k=5 but only 4"):
        choose_k(means, 5, 2, 6, 0.45, 0)
    labels, k, chosen_by, _ = choose_k(means[:1], None, 2, 6, 0.45, 0)
    assert (k, chosen_by, labels.tolist()) == (1, "single source", [0])
    # Two sources: silhouette is undefined, the similarity threshold decides.
    alike = np.array([[1.0, 0.0], [0.8, 0.6]])
    assert choose_k(alike, None, 2, 6, 0.75, 0)[1] == 1
    assert choose_k(alike, None, 2, 6, 0.85, 0)[1] == 2
    # k_min above what silhouette can test: forced to k_min.
    assert choose_k(_blobs([1, 1, 1]), None, 3, 6, 0.45, 0)[1:3] == (3, "k_min")


def test_source_means_and_stable_ids():
    vectors = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    means = source_means(vectors, [0, 0, 1], 2)
    assert np.allclose(means, [[2 ** -0.5, 2 ** -0.5], [1.0, 0.0]])
    assert assign_ids([1, 0, 1], ["b", "c", "a"]) == {"a": "g0", "b": "g0", "c": "g1"}


# --- the stage on real text -----------------------------------------------------------------------

SOURCES = ["py_code", "c_headers", "changelogs", "fortunes", "man_pages"]


def _config(run_dir: Path, sources=SOURCES, pins=None, **grouping) -> RunConfig:
    pins = pins or {}
    return RunConfig.model_validate({
        "name": "t", "run_dir": str(run_dir), "engine": {"workers": 1},
        "sources": [{"name": n, "path": str(DATA / f"{n}.jsonl"), **({"group": pins[n]} if n in pins else {})}
                    for n in sources],
        "grouping": {"sample_per_source": 6, **grouping},
    })


def _group(config: RunConfig, force: bool = False) -> dict:
    from mira.api import run_one

    run_one("ingest", config)
    run_one("group", config, force=force)
    return json.loads((Path(config.run_dir) / "groups.json").read_text())


@pytest.fixture(scope="module")
def grouped(tmp_path_factory) -> tuple[RunConfig, dict]:
    config = _config(tmp_path_factory.mktemp("group") / "run")
    return config, _group(config)


def test_code_sources_land_together_and_prose_apart(grouped):
    _, result = grouped
    where = result["source_to_group"]
    assert where["py_code"] == where["c_headers"]
    assert where["changelogs"] != where["py_code"] and where["fortunes"] != where["py_code"]


def test_groups_json_fields(grouped):
    _, result = grouped
    assert result["chosen_by"] == "silhouette"
    assert set(result["k_scores"]) == {"2", "3", "4"}       # k_min..min(k_max, n-1)
    assert result["k_scores"][str(result["k"])] == max(result["k_scores"].values())
    assert [g["id"] for g in result["groups"]] == [f"g{i}" for i in range(result["k"])]
    firsts = [min(g["sources"]) for g in result["groups"]]
    assert firsts == sorted(firsts)                          # ids ordered by first source name
    assert sorted(s for g in result["groups"] for s in g["sources"]) == sorted(SOURCES)
    sim = np.array(result["similarity"]["matrix"])
    assert result["similarity"]["sources"] == sorted(SOURCES)
    assert np.allclose(sim, sim.T) and np.allclose(np.diag(sim), 1.0, atol=1e-3)
    names = result["similarity"]["sources"]
    code = next(g for g in result["groups"] if "py_code" in g["sources"])
    i, j = names.index("py_code"), names.index("c_headers")
    if len(code["sources"]) == 2:
        assert code["within_similarity"] == pytest.approx(sim[i, j], abs=1e-3)
    assert result["embed_model"] == "all-MiniLM-L6-v2" and result["sample_per_source"] == 6
    assert all(not g["pinned"] for g in result["groups"])


@pytest.mark.slow
def test_loader_and_determinism(grouped):
    from mira.artifacts.groups import load_groups
    from mira.run.rundir import RunDir

    config, result = grouped
    groups = load_groups(RunDir(Path(config.run_dir)))
    assert groups.ids == [g["id"] for g in result["groups"]]
    assert groups.group_of("py_code") == result["source_to_group"]["py_code"]
    assert groups.group(groups.group_of("fortunes")).sources == \
        [s for s, g in sorted(result["source_to_group"].items()) if g == groups.group_of("fortunes")]
    again = _group(config, force=True)
    assert again == result


@pytest.mark.slow
def test_pinned_source_goes_to_its_named_group(tmp_path):
    result = _group(_config(tmp_path / "run", pins={"man_pages": "manuals"}))
    assert result["source_to_group"]["man_pages"] == "manuals"
    manuals = [g for g in result["groups"] if g["id"] == "manuals"]
    assert manuals and manuals[0]["pinned"] and manuals[0]["sources"] == ["man_pages"]
    assert manuals[0]["within_similarity"] == 1.0
    # The four free sources are clustered without it: silhouette over k = 2..3.
    assert set(result["k_scores"]) == {"2", "3"}
    assert result["groups"][-1]["id"] == "manuals"
    assert "man_pages" in result["similarity"]["sources"]     # still in the similarity matrix


@pytest.mark.slow
def test_small_source_counts(tmp_path):
    one = _group(_config(tmp_path / "one", sources=["py_code"]))
    assert one["k"] == 1 and one["chosen_by"] == "single source" and one["source_to_group"] == {"py_code": "g0"}
    two = _group(_config(tmp_path / "two", sources=["py_code", "fortunes"]))
    assert two["chosen_by"] == "similarity" and two["k"] == 2
    with pytest.raises(ConfigError, match="grouping.k=3"):
        _group(_config(tmp_path / "k3", sources=["py_code", "fortunes"], k=3))


def test_pinned_name_must_not_look_like_an_automatic_id(tmp_path):
    with pytest.raises(ConfigError, match="clashes with automatic group ids"):
        _group(_config(tmp_path / "run", pins={"man_pages": "g1"}))


def test_format_weight_separates_formats_with_similar_content():
    from mira.rubrics.grouping import with_format

    content = np.array([[1.0, 0.0], [0.95, 0.312], [0.9, 0.436]])
    content /= np.linalg.norm(content, axis=1, keepdims=True)
    plain = with_format(content, ["code", "text", "code"], 0.0)
    assert plain is content
    mixed = with_format(content, ["code", "text", "code"], 1.5)
    sim = mixed @ mixed.T
    # by content alone source 1 is nearer to source 0; with the format signal source 2 is
    assert (content @ content.T)[0, 1] > (content @ content.T)[0, 2]
    assert sim[0, 2] > sim[0, 1]
    assert np.allclose(np.linalg.norm(mixed, axis=1), 1.0)


def _planted_sources(seed: int = 0) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """21 source means in 5 content clusters (within cos ~0.85, across ~0.33, like MiniLM means of
    related vs unrelated corpora) whose formats cycle independently of content over 3 kinds."""
    rng = np.random.default_rng(seed)
    dim = 64
    common = rng.standard_normal(dim)
    centres = rng.standard_normal((5, dim))
    truth = np.arange(21) % 5
    noise = rng.standard_normal((21, dim))
    unit = [v / np.linalg.norm(v, axis=-1, keepdims=True) for v in (common, centres, noise)]
    means = 0.6 * unit[0] + 0.65 * unit[1][truth] + 0.35 * unit[2]
    formats = [("code", "text", "qa")[i % 3] for i in range(21)]
    return means / np.linalg.norm(means, axis=1, keepdims=True), truth, formats


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_default_grouping_recovers_content_clusters_not_formats(seed):
    from sklearn.metrics import adjusted_rand_score

    from mira.core.config import GroupingConfig
    from mira.rubrics.grouping import with_format

    means, truth, formats = _planted_sources(seed)
    g = GroupingConfig()

    def cluster(weight: float) -> tuple[np.ndarray, int]:
        labels, k, _, _ = choose_k(with_format(means, formats, weight), g.k, g.k_min, g.k_max, g.merge_similarity,
                                   g.seed, g.single_group_similarity, g.weak_silhouette)
        return labels, k

    labels, k = cluster(g.format_weight)
    assert k == 5 and adjusted_rand_score(truth, labels) >= 0.9
    # The old default (format weight 1.5) grouped these by format instead.
    old, _ = cluster(1.5)
    assert adjusted_rand_score(truth, old) < 0.5
    assert adjusted_rand_score([("code", "text", "qa").index(f) for f in formats], old) > 0.9


def test_near_identical_sources_share_one_group_and_distinct_ones_do_not():
    from mira.core.config import GroupingConfig

    g = GroupingConfig()
    args = (g.k, g.k_min, g.k_max, g.merge_similarity, g.seed, g.single_group_similarity, g.weak_silhouette)
    same = _blobs([6], noise=0.05)  # six shards of one corpus
    labels, k, chosen_by, scores = choose_k(same, *args)
    assert (k, chosen_by) == (1, "near-identical") and set(labels.tolist()) == {0} and scores
    # The same sources with k_min 2: the rule is off, silhouette splits them.
    assert choose_k(same, g.k, 2, g.k_max, g.merge_similarity, g.seed, g.single_group_similarity,
                    g.weak_silhouette)[1] >= 2
    # Clearly separated clusters are never merged into one.
    assert choose_k(_blobs([3, 2, 3]), *args)[1:3] == (3, "silhouette")
