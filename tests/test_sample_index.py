"""Sample once: ingest indexes the records later samples draw, and group, discover and annotate
read only those (mira.corpus.sample_index); the samples are the ones a full streaming pass chooses."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mira import api
from mira.core.config import EngineConfig, IngestConfig
from mira.core.hashing import stable_rank
from mira.corpus import sample_index, sources
from mira.corpus.sources import SourceInfo, sample_source, sample_stratified, source_infos
from mira.run.rundir import RunDir
from tests.conftest import DATA, make_config


def _streamed(config, info: SourceInfo, n: int, seed: int) -> list[str]:
    """The sample as the streaming sampler chooses it (no index)."""
    return [r.locator for r in sample_source(config, SourceInfo(**{**info.__dict__, "run": None}), n, seed)]


def _sources(tmp_path: Path) -> list[dict]:
    # Parquet in several row groups, a JSONL with repeated ids and broken lines, gzip, a folder.
    rows = [{"id": f"q{i}", "question": f"How do I do thing {i}?", "answer": f"Like this: step {i}."}
            for i in range(23)]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "faq.parquet", row_group_size=3)
    lines = [json.dumps({"id": f"d{i % 9}", "text": f"document number {i} with some words"}) for i in range(20)]
    lines[4] = "{not json"
    lines[7] = ""
    (tmp_path / "docs.jsonl").write_text("\n".join(lines) + "\n")
    # zstd, with ids in odd Unicode (combining marks, an emoji, a lone surrogate escape) and numbers.
    import zstandard

    odd = ["e\u0301", "\U0001F600", "\\ud800", 7, "7", "a\u2028b", "tab\tid", "" ]
    blob = "".join(json.dumps({"id": rid, "text": f"odd record {i}"}) + "\n" for i, rid in enumerate(odd * 2))
    (tmp_path / "odd.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(blob.encode()))
    mixed, broken = DATA / "mixed", DATA / "broken"
    return [{"name": "faq", "path": str(tmp_path / "faq.parquet")},
            {"name": "docs", "path": str(tmp_path / "docs.jsonl")},
            {"name": "odd", "path": str(tmp_path / "odd.jsonl.zst")},
            {"name": "code", "path": str(mixed / "code.jsonl")},
            {"name": "agent", "path": str(mixed / "agent.jsonl.gz")},
            {"name": "py", "path": str(DATA / "group_discover" / "py_code.jsonl")},
            {"name": "files", "path": str(broken / "files"), "include": "*.py"}]


@pytest.mark.parametrize("floor", [1_024, 2])
def test_indexed_samples_are_the_streamed_samples(tmp_path, monkeypatch, floor):
    # floor=2: every shard keeps only its 2 smallest ranks, so the index is cut short and exact
    # only up to the smallest cut; larger samples must fall back to streaming, and still agree.
    monkeypatch.setattr(sample_index, "INDEX_FLOOR", floor)
    config = make_config(tmp_path, _sources(tmp_path), ingest=IngestConfig(shard_records=4),
                         engine=EngineConfig(workers=1))  # in-process, so the floor applies
    config.grouping.sample_per_source = config.discovery.records_per_group = config.annotation.records_per_group = 2
    api.run_one("ingest", config)
    infos = source_infos(RunDir(Path(config.run_dir)))
    assert {i.name for i in infos if i.ok > 3 and len(i.shards) > 1} >= {"faq", "docs"}
    for info in infos:
        index = sample_index.load_index(info.run, info.name)
        assert index is not None and index.seeds["0"]["entries"], info.name
        for n in (1, 2, 3, 7, 100):
            for seed in (0, 5):  # seed 5 is not indexed: streamed
                chosen = [r.locator for r in sample_source(config, info, n, seed)]
                assert chosen == _streamed(config, info, n, seed), (info.name, n, seed)
                assert len(chosen) == min(n, info.ok)
    odd = next(i for i in infos if i.name == "odd")
    # Six distinct ids ("7" and 7 are one) whose repeats are duplicates, and two empty ids (their locators).
    assert odd.ok == 8 and len(sample_source(config, odd, 100, 0)) == 8
    docs = next(i for i in infos if i.name == "docs")
    assert docs.ok == 9 and all(len({r.id for r in sample_source(config, docs, n, 0)}) == min(n, 9) for n in (3, 12))


def test_the_index_is_exact_where_shards_were_cut():
    from mira.io.readers import Shard

    def shard(index, duplicates=()):
        return Shard(source="s", index=index, reader="jsonl", files=("f",), duplicates=tuple(duplicates))

    a, b = sample_index.ShardCandidates([0], 2), sample_index.ShardCandidates([0], 2)
    for i in range(5):
        a.add(f"a{i}", i, 10 * i, f"f:{i + 1}")
        b.add(f"b{i}", i, 10 * i, f"f:{i + 6}")
    ranks = sorted((stable_rank(0, f"{p}{i}"), f"{p}{i}") for p in "ab" for i in range(5))
    index = sample_index.build_index([shard(0), shard(1)], {0: a.to_json(), 1: b.to_json()}, 2)
    entries = index["seeds"]["0"]["entries"]
    assert not index["seeds"]["0"]["complete"] and index["usable"] == 10
    # Each shard kept its 2 best; the merged list stops where the first shard's list stops.
    assert [e[0] for e in entries] == [r for r, _ in ranks][:len(entries)] and 1 <= len(entries) <= 2
    assert sample_index.SampleIndex("s", index["seeds"]).take(0, 3) is None  # not covered: stream
    # A duplicate (quarantined after the workers ran) is never an entry.
    whole = sample_index.ShardCandidates([0], 10)
    for i in range(5):
        whole.add(f"a{i}", i, 0, f"f:{i + 1}")
    index = sample_index.build_index([shard(0, ["f:3"])], {0: whole.to_json()}, 10)
    assert index["usable"] == 4 and index["seeds"]["0"]["complete"]
    assert "f:3" not in [e[4] for e in index["seeds"]["0"]["entries"]]


def _merged_at_once(shards, candidates: dict, size: int) -> dict:
    """The index as ingest built it before merging as shards arrive: every candidate held to the end."""
    seeds = {}
    for seed in sorted({seed for c in candidates.values() for seed in c["seeds"]}, key=int):
        entries, cutoff = [], None
        for shard in shards:
            found = candidates[shard.index]
            entries += [[rank, shard.index, pos, off, loc] for rank, pos, off, loc in found["seeds"][seed]
                        if loc not in set(shard.duplicates)]
            if found["truncated"] and found["seeds"][seed]:
                top = found["seeds"][seed][-1][0]
                cutoff = top if cutoff is None else min(cutoff, top)
        entries.sort(key=lambda e: (e[0], e[1], e[2]))
        if cutoff is not None:
            entries = [e for e in entries if e[0] <= cutoff][:size]
        seeds[seed] = {"complete": cutoff is None, "entries": entries}
    usable = sum(candidates[s.index]["usable"] - len(s.duplicates) for s in shards)
    return {"usable": usable, "seeds": seeds}


def test_merging_as_shards_arrive_gives_the_index_of_merging_at_the_end():
    # Pruned while merging (in any arrival order), with ids repeated across shards (duplicates are
    # known only at the end), some shards cut and some not, two seeds: the same index, exactly.
    import random

    from mira.io.readers import Shard

    rng = random.Random(7)
    for trial in range(300):
        size = rng.randint(1, 6)
        pool = [f"r{i}" for i in range(rng.randint(5, 80))]
        shards, candidates, seen = [], {}, set()
        for index in range(rng.randint(1, 12)):
            found = sample_index.ShardCandidates([0, 3], size)
            duplicates = []
            for position in range(rng.randint(0, 3 * size)):
                record_id, locator = rng.choice(pool), f"f{index}:{position + 1}"
                if record_id in seen:
                    duplicates.append(locator)
                seen.add(record_id)
                found.add(record_id, position, 10 * position, locator)
            shards.append(Shard(source="s", index=index, reader="jsonl", files=("f",), duplicates=tuple(duplicates)))
            candidates[index] = found.to_json()
        merger = sample_index.IndexMerger(size)
        for index in rng.sample(sorted(candidates), len(candidates)):
            merger.add(index, candidates[index])
        assert merger.index(shards) == _merged_at_once(shards, candidates, size), f"trial {trial}"


def _counting(monkeypatch) -> list[str]:
    parsed: list[str] = []
    real = sources.to_record

    def counted(raw, *args, **kwargs):
        parsed.append(raw.locator)
        return real(raw, *args, **kwargs)

    monkeypatch.setattr(sources, "to_record", counted)
    return parsed


@pytest.mark.slow
def test_group_discover_and_annotate_parse_only_the_sampled_records(tmp_path, monkeypatch):
    from mira.teacher.testing import ScriptedServer
    from tests.test_pipeline import schema_teacher

    sources = ["py_code", "c_headers", "man_pages", "changelogs", "qa", "fortunes"]
    with ScriptedServer(schema_teacher) as server:
        config = make_config(tmp_path, [{"name": n, "path": str(DATA / "group_discover" / f"{n}.jsonl")}
                                        for n in sources], engine=EngineConfig(workers=1))
        config.teacher = server.teacher_config()
        config.grouping.sample_per_source, config.grouping.k = 2, 3
        config.discovery.records_per_group, config.discovery.anchors_per_group = 4, 2
        config.discovery.max_dimensions_per_judgment = 2
        config.annotation.records_per_group, config.annotation.self_consistency_records = 4, 1
        config.annotation.allocation = "even"  # 4 a group, as the count below says
        api.run_one("ingest", config)
        run = RunDir(Path(config.run_dir))
        corpus_records = sum(i.ok for i in source_infos(run))
        parsed = _counting(monkeypatch)

        api.run_one("group", config)
        groups = json.loads(run.groups_path.read_text())
        assert len(parsed) == sum(groups["sampled"].values()) == 2 * len(sources) < corpus_records

        parsed.clear()
        api.run_one("discover", config)
        judged = sum(len(p.read_text().splitlines()) for p in run.path("judgments").glob("*.jsonl"))
        assert len(parsed) == judged == 4 * 3

        parsed.clear()
        outcome = api.run_one("annotate", config)
        groups_labelled = outcome.counts["groups"]
        labelled = sum(pq.read_metadata(p).num_rows for p in run.path("labels").glob("g*[0-9].parquet"))
        assert groups_labelled >= 1 and len(parsed) == labelled == 4 * groups_labelled < corpus_records
        assert not any("sample index" in note for note in outcome.notes)


def test_a_run_without_an_index_streams_with_a_note_and_ingest_force_restores_it(tmp_path):
    config = make_config(tmp_path, [{"name": n, "path": str(DATA / "group_discover" / f"{n}.jsonl")}
                                    for n in ("py_code", "qa")], engine=EngineConfig(workers=1))
    api.run_one("ingest", config)
    run = RunDir(Path(config.run_dir))
    infos = source_infos(run)
    expected = {i.name: [r.locator for r in sample_stratified(config, [i], 3, 0)] for i in infos}
    for path in run.path("inventory", "sample").glob("*.json"):
        path.unlink()  # as a run ingested by an older mira
    assert {i.name: [r.locator for r in sample_stratified(config, [i], 3, 0)] for i in infos} == expected
    note = sources.index_note(infos, 0)
    assert note is not None and "py_code, qa" in note and "mira ingest --force" in note
    assert sources.index_note(infos, 0).count("\n") == 0

    before = run.done("ingest")["fingerprint"]
    assert not api.run_one("ingest", config, force=True).skipped
    assert run.done("ingest")["fingerprint"] == before  # nothing downstream reruns
    assert sources.index_note(source_infos(run), 0) is None


def test_an_input_edited_in_place_is_sampled_from_what_it_holds_now(tmp_path):
    path = tmp_path / "docs.jsonl"
    path.write_text("".join(json.dumps({"id": f"a{i}", "text": f"text {i:03d}"}) + "\n" for i in range(30)))
    config = make_config(tmp_path, [{"name": "docs", "path": str(path)}], engine=EngineConfig(workers=1))
    api.run_one("ingest", config)
    stat = path.stat()
    # Same size and mtime, other ids: the index points at records that are no longer there.
    path.write_text("".join(json.dumps({"id": f"b{i}", "text": f"text {i:03d}"}) + "\n" for i in range(30)))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    info = source_infos(RunDir(Path(config.run_dir)))[0]
    chosen = sample_source(config, info, 5, 0)
    assert [r.locator for r in chosen] == _streamed(config, info, 5, 0)
    assert all(r.id.startswith("b") for r in chosen)


def test_ingest_removes_its_killed_temporaries_and_indexes_of_gone_sources_and_nothing_else(tmp_path):
    sources = [{"name": n, "path": str(DATA / "group_discover" / f"{n}.jsonl")} for n in ("py_code", "qa")]
    config = make_config(tmp_path, sources, engine=EngineConfig(workers=1))
    api.run_one("ingest", config)
    folder = RunDir(Path(config.run_dir)).path("inventory", "sample")
    leftover = folder / ".qa.json.k3j9x_q2.tmp"  # what a kill -9 mid-write leaves
    leftover.write_text("{")
    mine = folder / "notes.txt"
    mine.write_text("the user's", encoding="utf-8")
    config.sources = config.sources[:1]  # qa is no longer a source
    api.run_one("ingest", config)
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt", "py_code.json"]
    assert mine.read_text(encoding="utf-8") == "the user's"
