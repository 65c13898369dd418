"""`mira compare --replicates N` (issue 26 item 3): MIRA's chain on more annotation draws, per draw and pooled.

A finished run is made once with the scripted teacher (tests/test_pipeline.py's, which answers any
schema); each test copies it. Proxy training is the stand-in of tests/compare/test_compare_proxy.py.
"""

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from scipy import stats

from mira import api
from mira.cli import main
from mira.core.config import CompareConfig, ConfigError
from mira.core.errors import StageIncomplete
from mira.evaluation.replicates import proxy_verdicts
from mira.evaluation.tables import summary_lines
from mira.run.linked import LinkedRun
from mira.run.rundir import RunDir
from mira.teacher.testing import ScriptedServer
from tests.compare.test_compare_proxy import StandIn
from tests.engines.doubles import tree_bytes
from tests.test_pipeline import _config as pipeline_config
from tests.test_pipeline import schema_teacher

MIRA = ["mira-source-50pct", "mira-group-50pct"]
RANDOM = "random-source-50pct"


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A run done up to select with the scripted teacher; returns its folder and every request body sent."""
    root = tmp_path_factory.mktemp("finished")
    with ScriptedServer(schema_teacher) as server:
        api.run_pipeline(pipeline_config(root, server.teacher_config()), until="select")
        sent = [_body(b) for b in server.requests]
    return root / "run", sent


def _body(request: dict) -> str:
    return json.dumps(request, sort_keys=True)


def _config(finished, tmp_path: Path, teacher, replicates=3, proxy=True, **compare):
    template, _ = finished
    if not (tmp_path / "run").exists():
        shutil.copytree(template, tmp_path / "run")
    held_out = tmp_path / "heldout.jsonl"
    held_out.write_text("".join(json.dumps({"id": f"h{i}", "text": f"held-out text number {i} " * 20}) + "\n"
                                for i in range(30)))
    settings = {"methods": [{"method": "mira", "mode": "source"}, {"method": "random", "mode": "source"},
                            {"method": "mira", "mode": "group"}],
                "replicates": replicates, "known_bad": ["py/textwrap.py", "qa/1"],
                "eval_sets": [{"name": "heldout", "path": str(held_out)}],
                "proxy": {"enabled": proxy, "seeds": 3, "train_bytes": 4096, "eval_bytes": 1000}, **compare}
    base = pipeline_config(tmp_path, teacher)
    return base.model_copy(update={"compare": CompareConfig.model_validate(settings)})


def _own(run: RunDir) -> dict[str, bytes]:
    """The run's own labels, students, scores and selections, byte for byte."""
    out: dict[str, bytes] = {}
    for folder in ("labels", "students", "scores", "selection"):
        out |= {f"{folder}/{k}": v for k, v in tree_bytes(run.path(folder)).items()}
    return out


@pytest.mark.slow
def test_replicated_compare_end_to_end(finished, tmp_path):
    run = RunDir(tmp_path / "run")
    stand_in = StandIn()
    with ScriptedServer(schema_teacher) as server:
        config = _config(finished, tmp_path, server.teacher_config())
        # The same comparison without draws first: what the draws must then leave as it is.
        api.compare(config.model_copy(update={"compare": config.compare.model_copy(update={"replicates": 1})}),
                    proxy_api=stand_in.api)
        assert server.requests == [] and not run.path("compare", "replicates").exists()
        before = _own(run)
        folder = tree_bytes(run.root)
        plan = api.compare_plan(config)
        assert tree_bytes(run.root) == folder  # the dry run writes nothing
        result = api.compare(config, proxy_api=stand_in.api)
        sent = [_body(b) for b in server.requests]
    # The dry run's count of new teacher requests is what the draws then sent.
    total = next(line for line in plan if line.startswith("  draws: "))
    assert int(total.split()[1]) == len(sent) > 0
    assert any(line.startswith("  r2: ") and "asked by an earlier draw" in line for line in plan)
    # A request is never paid twice: nothing the run asked, and nothing twice within the compare.
    assert len(set(sent)) == len(sent) and not set(sent) & set(finished[1])

    block = result["replicates"]
    assert json.loads(run.path("compare", "summary.json").read_text())["replicates"] == block
    assert block["count"] == 3 and block["mira"] == MIRA and block["random"] == RANDOM
    assert [d["annotation_seed"] for d in block["draws"]] == [0, 1, 2]
    assert [d["folder"] for d in block["draws"]] == [None, "compare/replicates/r1", "compare/replicates/r2"]
    # Each draw's teacher cost is its own annotate pass: the answers paid for add up to what was sent.
    assert sum(d["teacher_cost"]["answered"] for d in block["draws"][1:]) == len(sent)
    assert block["draws"][0]["teacher_cost"]["requests"] == block["draws"][1]["teacher_cost"]["requests"] > 0
    # The draws labelled other records (overlapping ones came from the cache).
    import pyarrow.parquet as pq

    def labelled(root: Path) -> set[str]:
        return {r for p in sorted(root.glob("labels/*.parquet")) if "consistency" not in p.name
                for r in pq.read_table(p, columns=["record_id"]).column("record_id").to_pylist()}

    first, second = labelled(run.root), labelled(run.path("compare", "replicates", "r1"))
    assert first & second and first != second
    for name in MIRA:
        rows = block["selections"][name]["draws"]
        assert [r["draw"] for r in rows] == [0, 1, 2] and rows[0]["overlap_first"] == 1.0
        assert (run.path("compare", "replicates", "r2", "selection", name, "summary.json")).exists()
        pooled = block["selections"][name]["pooled"]["token_share"]
        assert pooled["mean"] == pytest.approx(sum(r["token_share"] for r in rows) / 3)
    # Non-MIRA methods are built once, in the run.
    assert not run.path("compare", "replicates", "r1", "selection", RANDOM).exists()

    # Pooled verdicts: the draw-level t-test of each draw's mean paired difference, from the stored results.
    assert len(block["verdicts"]) == 2
    assert all(r["known_bad_kept"] is not None for n in MIRA for r in block["selections"][n]["draws"])
    for verdict in block["verdicts"]:
        name = verdict["a"]

        def bpb(root: Path, selection: str) -> list[float]:
            return [json.loads((root / "compare" / "proxy" / selection / f"seed{k}.json").read_text())
                    ["result"]["eval"]["heldout"]["bpb"] for k in range(3)]

        baseline = bpb(run.root, RANDOM)
        roots = (run.root, run.path("compare", "replicates", "r1"), run.path("compare", "replicates", "r2"))
        diffs = [sum(a - b for a, b in zip(bpb(root, name), baseline, strict=True)) / 3 for root in roots]
        assert [d["diff"] for d in verdict["draws"]] == pytest.approx(diffs)
        pooled = verdict["pooled"]
        assert pooled["diff"] == pytest.approx(sum(diffs) / 3) and pooled["pairs"] == 9
        if len(set(diffs)) > 1:
            assert pooled["p"] == pytest.approx(stats.ttest_1samp(diffs, 0.0).pvalue)
        assert pooled["family"] == 2
    lines = [text for text, _ in summary_lines(result)]
    assert any(t.startswith("annotation draws: 3") for t in lines)
    assert any(t.startswith("proxy over annotation draws") for t in lines)
    assert sum(t.split()[:1] == ["r2"] or " r2 " in t[:40] for t in lines) >= 2
    page = run.path("report", "index.html").read_text()
    assert "Annotation draws" in page and "Proxy verdicts over the draws" in page

    # The run's own labels, students, scores and selections are untouched (byte for byte).
    assert _own(run) == before

    # A rerun asks the teacher nothing, trains nothing and redoes no draw.
    markers = {d: run.path("compare", "replicates", d, "_done", "score.json").read_text() for d in ("r1", "r2")}
    calls = len(stand_in.calls)
    with ScriptedServer(schema_teacher) as server:
        again = api.compare(_config(finished, tmp_path, server.teacher_config()), proxy_api=stand_in.api)
        assert server.requests == []
    assert len(stand_in.calls) == calls and again["replicates"]["verdicts"] == block["verdicts"]
    assert {d: run.path("compare", "replicates", d, "_done", "score.json").read_text() for d in markers} == markers


@pytest.mark.slow
def test_a_killed_replicated_compare_resumes_without_paying_twice(finished, tmp_path, monkeypatch):
    from mira.stages import distill

    run = RunDir(tmp_path / "run")
    sent: list[str] = []
    # 1. The teacher budget stops r1's annotate part way (answers so far are cached).
    with ScriptedServer(schema_teacher) as server:
        config = _config(finished, tmp_path, server.teacher_config(max_requests=10), proxy=False)
        with pytest.raises(StageIncomplete):
            api.compare(config)
        sent += [_body(b) for b in server.requests]
    assert 0 < len(sent) and not run.path("compare", "replicates", "r1", "_done", "annotate.json").exists()
    # 2. Killed in r2's distill, after r1 is finished.
    real = distill.run

    def killed(ctx):
        if ctx.run.root.name == "r2":
            raise KeyboardInterrupt
        return real(ctx)

    monkeypatch.setattr(distill, "run", killed)
    with ScriptedServer(schema_teacher) as server:
        config = _config(finished, tmp_path, server.teacher_config(), proxy=False)
        with pytest.raises(KeyboardInterrupt):
            api.compare(config)
        sent += [_body(b) for b in server.requests]
    r1 = {p.name: p.read_text() for p in run.path("compare", "replicates", "r1", "_done").glob("*.json")}
    assert {"annotate.json", "distill.json", "score.json"} <= set(r1)
    assert run.path("compare", "replicates", "r2", "_done", "annotate.json").exists()
    # 3. The rerun finishes r2 only: no teacher request, r1's markers as they were.
    monkeypatch.setattr(distill, "run", real)
    with ScriptedServer(schema_teacher) as server:
        result = api.compare(_config(finished, tmp_path, server.teacher_config(), proxy=False))
        assert server.requests == []
    assert {p.name: p.read_text() for p in run.path("compare", "replicates", "r1", "_done").glob("*.json")} == r1
    assert len(set(sent)) == len(sent) and not set(sent) & set(finished[1])
    block = result["replicates"]
    assert block["verdicts"] is None and [len(block["selections"][n]["draws"]) for n in MIRA] == [3, 3]
    assert sum(d["teacher_cost"]["answered"] for d in block["draws"][1:]) == len(sent)


@pytest.mark.parametrize("value", ["0", "-1", "x", "1.5"])
def test_a_bad_replicate_count_is_one_line(tmp_path, value):
    config = tmp_path / "c.yaml"
    config.write_text(f"name: t\nrun_dir: {tmp_path / 'run'}\nsources:\n  - name: a\n    path: {tmp_path}/a.jsonl\n")
    out = CliRunner().invoke(main, ["compare", str(config), "--replicates", value, "--dry-run"])
    assert out.exit_code == 2, out.output
    lines = out.output.strip().splitlines()
    assert len(lines) == 1 and "compare.replicates" in lines[0] and "Traceback" not in out.output
    assert not (tmp_path / "run").exists()


def test_replicates_need_a_mira_selection(tmp_path):
    from tests.engines.doubles import make_config

    config = make_config([{"name": "a", "path": str(tmp_path / "a.jsonl")}], tmp_path / "run",
                         compare=CompareConfig.model_validate({"methods": [{"method": "random", "mode": "source"}],
                                                               "replicates": 2}))
    with pytest.raises(ConfigError, match="no MIRA selection"):
        api.compare_plan(config)


def test_pooled_verdict_is_a_t_test_over_the_draws():
    from mira.evaluation import proxy

    random = [2.0, 2.1, 2.2]
    # Draw r: a constant offset per draw, plus the same seed pattern: the draw is the unit.
    offsets = [-0.05, -0.02, 0.01]
    values = [{"m": {"e": [b + o + 0.001 * k for k, b in enumerate(random)]}, "r": {"e": random}} for o in offsets]
    (verdict,) = proxy_verdicts(proxy, ["m"], ["r"], ["e"], values)
    diffs = [d["diff"] for d in verdict["draws"]]
    assert diffs == pytest.approx([o + 0.001 for o in offsets])
    pooled = verdict["pooled"]
    test = stats.ttest_1samp(diffs, 0.0)
    assert pooled["diff"] == pytest.approx(sum(diffs) / 3) and pooled["p"] == pytest.approx(test.pvalue)
    half = stats.t.ppf(0.975, 2) * stats.sem(diffs)
    assert (pooled["low"], pooled["high"]) == pytest.approx((pooled["diff"] - half, pooled["diff"] + half))
    # Every draw alone is far beyond seed noise (its seeds agree exactly); pooled over draws it is not.
    assert pooled["draws_better"] == 2 and pooled["draws_worse"] == 1
    assert not pooled["beyond_noise"] and pooled["better"] is None and pooled["family"] == 1
    assert pooled["replicates_needed"] > 3 and "t over 3 draws" in pooled["text"]


def test_a_linked_run_reads_the_runs_inputs_and_cache(tmp_path):
    run = RunDir(tmp_path / "run")
    run.claim()
    run.groups_path.write_text("{}")
    run.path("rubrics").mkdir()
    run.mark_done("group", "g")
    linked = LinkedRun(run.path("compare", "replicates", "r1"), parent=run.root)
    linked.link()
    linked.link()  # idempotent
    assert linked.groups_path.read_text() == "{}" and linked.path("rubrics").is_dir()
    assert linked.stage_fingerprint("group") == "g" and linked.done("ingest") is None
    assert linked.teacher_cache_path == run.teacher_cache_path
    assert (linked.root / ".mira-run").is_file()
    # A link removed (or replaced by a file) is made again; a real folder in its place is refused.
    (linked.root / "groups.json").unlink()
    (linked.root / "groups.json").write_text("stale")
    linked.link()
    assert linked.groups_path.read_text() == "{}"
    (linked.root / "rubrics").unlink()
    (linked.root / "rubrics").mkdir()
    with pytest.raises(ConfigError, match="not a link"):
        linked.link()
